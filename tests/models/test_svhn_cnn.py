from __future__ import annotations

import pytest
import torch
from torch import nn

from preimage.errors import ShapeError
from preimage.models import SVHNCNN, build_model


def test_table_3_shapes_and_parameter_count() -> None:
    net = SVHNCNN((1, 32, 32), 10)
    x = torch.zeros(2, 1, 32, 32)
    h1 = net.conv1(x)
    h2 = net.conv2(h1)
    h3 = net.conv3(h2)
    assert (h1.shape[1:], h2.shape[1:], h3.shape[1:]) == ((32, 16, 16), (64, 6, 6), (64, 2, 2))
    weights = [m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weights == [2048, 73728, 102400, 2560]  # table 3: 2.0k, 73.7k, 102.4k, 2.6k
    assert sum(p.numel() for p in net.parameters()) == 180_906  # 180.9k


def test_model_c_batch_norm_on_middle_layers() -> None:
    net = build_model("svhn-cnn", (1, 32, 32), 10, batch_norm=True)
    bns = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns == ["conv2.1", "conv3.1"]
    assert all(m.momentum is None for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert list(net.layers()) == ["conv1", "conv2", "conv3", "output"]


def test_rejects_other_sizes() -> None:
    with pytest.raises(ShapeError):
        SVHNCNN((1, 28, 28))
