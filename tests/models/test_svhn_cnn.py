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
    assert list(net.layers()) == ["conv1", "conv2", "conv3", "output"]


def test_model_c_evaluates_with_the_last_training_batch_statistics() -> None:
    # Weight decay shrinks the pre-normalisation activations along training; averaging the
    # statistics of all batches (momentum=None) then mis-normalises in evaluation.
    torch.manual_seed(0)
    net = SVHNCNN((1, 32, 32), 10, batch_norm=True)
    batches = [scale * torch.randn(64, 1, 32, 32) for scale in (10.0, 3.0, 1.0)]
    net.train()
    with torch.no_grad():
        for batch in batches:
            train_mode = net(batch)
        net.eval()
        eval_mode = net(batches[-1])
    # Not exact: evaluation divides by the unbiased variance, training by the biased one
    # (a factor 256 / 255 for conv3's 2 x 2 maps of 64 inputs).
    assert float((eval_mode - train_mode).norm() / train_mode.norm()) < 1e-2


def test_rejects_other_sizes() -> None:
    with pytest.raises(ShapeError):
        SVHNCNN((1, 28, 28))
