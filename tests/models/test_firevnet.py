"""FiRevNet: shapes, read-outs, split/merge, clear errors. Invertibility is in test_properties."""

from __future__ import annotations

import pytest
import torch

from preimage.errors import ConfigError, DTypeError, PreimageError, ShapeError
from preimage.models import FiRevNet, build_model
from preimage.nn import Squeeze


@pytest.mark.parametrize(
    "shape", [(1, 8, 12), (3, 7, 9), (2, 6, 6), (5, 4, 10), (1, 28, 28), (3, 5, 4)]
)
def test_non_square_and_odd_shapes_round_trip(shape: tuple[int, ...]) -> None:
    model = FiRevNet(shape, 3, stages=3, blocks_per_stage=1, hidden=8).eval()
    x = torch.rand(4, *shape)
    with torch.no_grad():
        z, logdet = model(x)
        assert z.shape == (4, x[0].numel())
        assert float((model.inverse(z) - x).abs().max()) < 1e-5
    assert logdet.shape == (4,)


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((1, 7, 7), {}, "channels"),
        ((1, 28, 28, 1), {}, "inputs"),
        ((1, 4, 4), {"num_classes": 17}, "num_classes"),
        ((1, 4, 4), {"coupling": "magic"}, "coupling"),
        ((1, 4, 4), {"readout": "last"}, "readout"),
        ((1, 4, 4), {"depth": 3}, "unknown"),
        ((1,), {}, "num_classes"),
    ],
)
def test_refused_with_clear_errors(shape: tuple[int, ...], kwargs: dict, match: str) -> None:
    num_classes = kwargs.pop("num_classes", 2 if shape != (1,) else 1)
    with pytest.raises((ShapeError, ConfigError), match=match):
        FiRevNet(shape, num_classes, **kwargs)


def test_wrong_input_shape_is_a_shape_error() -> None:
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=4)
    with pytest.raises(ShapeError, match=r"\(batch, 1, 8, 8\)"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ShapeError, match=r"\(batch, 64\)"):
        model.inverse(torch.rand(2, 10))


def test_logits_split_merge_are_consistent() -> None:
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=4).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        z, _ = model(x)
        z_s, z_n = model.split(z)
        assert z_s.shape == (3, 10) and z_n.shape == (3, 54)
        assert torch.equal(model.logits(x), z_s)
        assert torch.equal(model.merge(z_s, z_n), z)
    with pytest.raises(ShapeError):
        model.merge(z_s[:2], z_n)


def test_dct_readout_puts_average_pooling_in_the_logits() -> None:
    # Without ActNorm and 1x1 convolutions, additive couplings with zero-initialised
    # sub-networks are the identity: the network is squeeze, squeeze, DCT read-out, and the
    # logits are the DC components sqrt(H*W) * mean of the first four feature maps.
    model = FiRevNet(
        (1, 8, 8),
        4,
        stages=2,
        blocks_per_stage=1,
        hidden=4,
        readout="dct",
        split=False,
        actnorm=False,
        conv1x1=False,
        coupling="additive",
    ).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    squeeze = Squeeze()
    features = squeeze(squeeze(x)[0])[0]
    with torch.no_grad():
        logits = model.logits(x)
    assert torch.allclose(logits, 2.0 * features[:, :4].mean((2, 3)))


def test_config_rebuilds_the_same_architecture() -> None:
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=2, hidden=6, coupling="additive")
    cfg = model.config
    clone = build_model("fi-revnet", cfg.pop("in_shape"), cfg.pop("num_classes"), **cfg)
    result = clone.load_state_dict(model.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = torch.rand(3, 1, 8, 8)
    model.eval()
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone(x)[0], model(x)[0]) and torch.equal(clone(x)[1], model(x)[1])


def test_dense_variant_for_vectors() -> None:
    model = FiRevNet(
        (100,), 2, stages=1, blocks_per_stage=4, hidden=16, coupling="additive", batch_norm=False
    ).eval()
    x = torch.randn(5, 100)
    with torch.no_grad():
        z, _ = model(x)
        assert float((model.inverse(z) - x).abs().max()) < 1e-5
    assert model.logits(x).shape == (5, 2)


def test_api_misuse_gives_typed_one_line_errors() -> None:
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=4)
    with pytest.raises(DTypeError, match="float64 inputs but its parameters are float32"):
        model(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(ShapeError, match="empty batch"):
        model(torch.rand(0, 1, 8, 8))
    with pytest.raises(ShapeError, match="empty batch"):
        model.inverse(torch.rand(0, 64))
    with pytest.raises(ConfigError, match=r"FiRevNetConfig\.hidden must be an int, got .a."):
        FiRevNet((1, 8, 8), 10, hidden="a")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_norm must be a bool"):
        FiRevNet((1, 8, 8), 10, batch_norm=1)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"\(batch, 64\), got \(2, 63\)"):
        model.split(torch.rand(2, 63))
    z_s, z_n = model.split(torch.rand(2, 64))
    with pytest.raises(ShapeError, match=r"\(batch, 54\)"):
        model.merge(z_s, z_n[:, 1:])
    for err in (DTypeError, ShapeError, ConfigError):
        assert issubclass(err, PreimageError)


def test_built_under_float64_default_dtype() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=2, hidden=4)
    finally:
        torch.set_default_dtype(previous)
    dtypes = {t.dtype for t in model.state_dict().values() if t.is_floating_point()}
    assert dtypes == {torch.float64}
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        z, _ = model.eval()(x)
        assert float((model.inverse(z) - x).abs().max()) <= 1e-12
