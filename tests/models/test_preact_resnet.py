"""Tests of preimage.models.preact_resnet: depth, widths and what removing shortcuts changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from preimage.errors import ConfigError
from preimage.models import PlainNet, PreActResNet
from preimage.models.preact_resnet import PreActBlock


def test_resnet32_has_32_weight_layers_and_64_features() -> None:
    net = PreActResNet((3, 32, 32), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 32  # stem + 2 per block x 15 blocks, plus the head
    x = torch.rand(2, 3, 32, 32)
    assert net.features(x).shape == (2, 64) and net.logits(x).shape == (2, 10)


def test_plainnet_has_the_same_parameters_but_no_identity_path() -> None:
    torch.manual_seed(0)
    res, plain = (
        PreActResNet((1, 8, 8), 5, depth=8, width=4),
        PlainNet((1, 8, 8), 5, depth=8, width=4),
    )
    plain.load_state_dict(res.state_dict())
    x = torch.rand(4, 1, 8, 8)
    assert not torch.allclose(res(x), plain(x))
    block = PreActBlock(4, 8, stride=2).eval()
    h = torch.rand(2, 4, 8, 8)
    skip = nn.functional.pad(nn.functional.avg_pool2d(h, 2), (0, 0, 0, 0, 0, 4))
    torch.testing.assert_close(block(h), block.residual(h) + skip)
    block.shortcut = False
    torch.testing.assert_close(block(h), block.residual(h))


def test_bad_depth_raises() -> None:
    with pytest.raises(ConfigError):
        PreActResNet((1, 8, 8), 10, depth=31)
