"""embed_image / unembed_image: the authors' 3x32x32 embedding of MNIST and its exact inverse."""

from __future__ import annotations

import pytest
import torch

from preimage.data import embed_image, unembed_image
from preimage.errors import ShapeError


def test_mnist_becomes_3x32x32_with_a_centred_digit_and_two_empty_channels() -> None:
    x = torch.rand(4, 1, 28, 28)
    e = embed_image(x)
    assert e.shape == (4, 3, 32, 32) and e.dtype == x.dtype
    assert torch.equal(e[:, :1, 2:30, 2:30], x)
    mask = torch.ones_like(e, dtype=torch.bool)
    mask[:, :1, 2:30, 2:30] = False
    assert float(e[mask].abs().max()) == 0.0
    assert torch.equal(unembed_image(e, (1, 28, 28)), x)


@pytest.mark.parametrize(
    ("shape", "size", "channels"),
    [((1, 28, 28), 28, 1), ((2, 5, 6), 9, 4), ((3, 7, 4), 8, 3), ((1, 1, 1), 2, 2)],
)
def test_unembed_is_an_exact_left_inverse(
    shape: tuple[int, int, int], size: int, channels: int
) -> None:
    x = torch.randn(3, *shape, dtype=torch.float64)
    e = embed_image(x, size, channels)
    assert e.shape == (3, channels, size, size)
    assert torch.equal(unembed_image(e, shape), x)
    # Odd margins: the extra row and column go to the bottom and the right.
    top, left = (size - shape[1]) // 2, (size - shape[2]) // 2
    assert torch.equal(e[:, : shape[0], top : top + shape[1], left : left + shape[2]], x)
    assert float(e.abs().sum()) == pytest.approx(float(x.abs().sum()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 27}, "size 27 is smaller than the 28x28"),
        ({"channels": 0}, "channels 0 is fewer than the images' 1"),
    ],
)
def test_too_small_targets_are_shape_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        embed_image(torch.rand(2, 1, 28, 28), **kwargs)


def test_bad_batches_and_crops_are_shape_errors() -> None:
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        embed_image(torch.rand(28, 28))
    e = embed_image(torch.rand(2, 1, 28, 28))
    with pytest.raises(ShapeError, match="cannot crop 4x28x28"):
        unembed_image(e, (4, 28, 28))
    with pytest.raises(ShapeError, match="cannot crop 1x33x28"):
        unembed_image(e, (1, 33, 28))
    with pytest.raises(ShapeError, match=r"shape \(C, H, W\)"):
        unembed_image(e, (28, 28))  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        unembed_image(e[0], (1, 28, 28))
