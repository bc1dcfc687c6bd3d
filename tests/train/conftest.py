"""Fixtures of the training tests: tiny quantised image data and tiny models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn


class TinyCNN(nn.Module):
    """An invertible-classifier look-alike: ``forward`` returns a pair, ``logits`` the scores.

    BatchNorm (buffers) and dropout (global RNG) make resuming non-trivial.
    """

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.features(x)
        return z, z.new_zeros(x.shape[0])

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class TinyMLP(nn.Module):
    """A plain classifier: ``forward`` returns logits."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def make_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """8-bit-quantised 1x8x8 images in [0, 1]; the label is which third holds the brightest row."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g).float() / 255
    labels = images[:, 0].mean(dim=2).argmax(dim=1) * 3 // 8
    return images, labels


@pytest.fixture
def data() -> tuple[Tensor, Tensor]:
    return make_data(40, seed=1)


@pytest.fixture
def test_data() -> tuple[Tensor, Tensor]:
    return make_data(24, seed=2)


@pytest.fixture
def cnn() -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return TinyCNN()

    return build


@pytest.fixture
def mlp() -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return TinyMLP()

    return build
