from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.models import MODELS, build_model
from preimage.models.baselines import CNN, CNNConfig


@pytest.mark.parametrize(
    ("in_shape", "options"),
    [
        ((1, 28, 28), {}),
        ((3, 8, 8), {"width": 4, "depth": 4, "blocks": 2}),
        ((1, 5, 7), {"width": 3, "depth": 3, "residual": False}),
        ((2, 1, 1), {"width": 2, "depth": 2, "dropout": 0.5}),
    ],
)
def test_forward_shapes(in_shape: tuple[int, ...], options: dict[str, object]) -> None:
    model = CNN(in_shape, 7, **options).eval()
    x = torch.rand(3, *in_shape)
    logits = model(x)
    assert logits.shape == (3, 7) and logits.dtype == torch.float32
    assert torch.equal(model.logits(x), logits)
    assert torch.isfinite(logits).all()


def test_stage_layout() -> None:
    model = CNN((1, 28, 28), 10, width=8, depth=3, blocks=2)
    shapes: list[tuple[int, ...]] = []
    for block in model.features:
        if block.__class__.__name__ == "_BasicBlock":
            block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    model.eval()(torch.zeros(1, 1, 28, 28))
    assert shapes == [(8, 28, 28), (8, 28, 28), (16, 14, 14), (16, 14, 14), (32, 7, 7), (32, 7, 7)]
    assert model.head[-1].in_features == 32


def test_residual_switch_changes_the_function() -> None:
    torch.manual_seed(0)
    res = CNN((1, 8, 8), 3, width=4, depth=2).eval()
    torch.manual_seed(0)
    plain = CNN((1, 8, 8), 3, width=4, depth=2, residual=False).eval()
    # Same weights where both have them; the plain net lacks the projection shortcut.
    assert set(plain.state_dict()) < set(res.state_dict())
    plain.load_state_dict({k: v for k, v in res.state_dict().items() if k in plain.state_dict()})
    x = torch.rand(4, 1, 8, 8)
    assert not torch.allclose(res(x), plain(x))


def test_identity_shortcut_is_added() -> None:
    # With the residual body zeroed (last BN scale 0), a block is ReLU(x): identity on x >= 0.
    model = CNN((2, 6, 6), 3, width=2, depth=1).eval()
    block = model.features[3]
    nn.init.zeros_(block.body[4].weight)
    x = torch.rand(5, 2, 6, 6)
    assert torch.equal(block(x), x)


def test_not_invertible() -> None:
    # The workflow draws reconstructions and metamers only for models with an inverse.
    assert not hasattr(CNN((1, 8, 8), 10), "inverse")


def test_trains_on_a_tiny_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    y = torch.arange(16) % 4
    model = CNN((1, 8, 8), 4, width=8, depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    assert float((logits.argmax(1) == y).float().mean()) == 1.0


def test_every_parameter_gets_a_gradient() -> None:
    model = CNN((1, 8, 8), 4, width=4, depth=3, blocks=2)
    model(torch.rand(6, 1, 8, 8)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_follows_dtype() -> None:
    model = CNN((1, 8, 8), 4, width=4, depth=2).double().eval()
    assert model(torch.rand(2, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_dropout_only_in_training() -> None:
    model = CNN((1, 8, 8), 4, width=8, depth=1, dropout=0.5)
    x = torch.rand(3, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(x))


def test_config_round_trip_through_the_registry() -> None:
    assert MODELS["cnn"] is CNN
    model = build_model("cnn", (1, 8, 8), 10, width=6, depth=2, blocks=2, dropout=0.1)
    config = model.config
    assert config == {
        "in_shape": [1, 8, 8],
        "num_classes": 10,
        "width": 6,
        "depth": 2,
        "blocks": 2,
        "dropout": 0.1,
        "residual": True,
    }
    options = {k: v for k, v in config.items() if k not in ("in_shape", "num_classes")}
    rebuilt = build_model("cnn", config["in_shape"], config["num_classes"], **options)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))
    assert CNN(**config).config == config


def test_validation() -> None:
    with pytest.raises(ConfigError, match="unknown CNN options: stages"):
        CNN((1, 8, 8), 10, stages=2)
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        CNN((100,), 2)
    with pytest.raises(ConfigError, match="num_classes"):
        CNN((1, 8, 8), 1)
    with pytest.raises(ConfigError, match=">= 1"):
        CNNConfig(depth=0)
    with pytest.raises(ConfigError, match="dropout"):
        CNNConfig(dropout=1.0)
    with pytest.raises(ShapeError, match="expects inputs"):
        CNN((1, 8, 8), 10)(torch.zeros(2, 1, 9, 8))
