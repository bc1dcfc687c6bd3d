"""FiRevNet: shapes, read-outs, split/merge, clear errors. Invertibility is in test_properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from preimage.errors import ConfigError, DTypeError, PreimageError, ShapeError
from preimage.models import FiRevNet, FiRevNetConfig, build_model
from preimage.nn import BijectiveClassifier, CenterReadout, InvertibleModule, Squeeze, logits_of
from preimage.train import TrainConfig, Trainer, load_checkpoint, save_checkpoint


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
        ((1, 28, 28), {"num_classes": 10, "readout": "center"}, ">= 10 channels"),
        ((1, 8, 8), {"stages": 2, "stage_blocks": (1, 1, 1)}, "one count per stage"),
        ((1, 8, 8), {"stages": 2, "stage_blocks": (1, 0)}, ">= 1"),
        ((1, 8, 8), {"stages": 2, "stage_blocks": (1, 1.5)}, "tuple of int"),
        ((1, 8, 8), {"stages": 2, "stage_blocks": 2}, "tuple of int"),
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


def _tiny(**kwargs: object) -> FiRevNet:
    base = {"stages": 2, "blocks_per_stage": 1, "hidden": 4, "coupling": "additive"}
    return FiRevNet((1, 8, 8), 3, **{**base, **kwargs})  # type: ignore[arg-type]


def test_center_readout_takes_ten_whole_channels_at_the_centre_of_the_48x4x4_top_map() -> None:
    model = FiRevNet((3, 32, 32), 10, stages=3, blocks_per_stage=1, hidden=4, readout="center")
    stages = []
    stage: InvertibleModule = model.net
    while True:  # walk the nested stages: squeeze, blocks, then a Split (or the read-out)
        squeezes = [m for m in stage if isinstance(m, Squeeze)]
        last = stage[len(stage) - 1]
        stages.append((len(squeezes), type(last).__name__))
        if not hasattr(last, "inner"):
            break
        stages[-1] += (last.in_shape, last.keep)
        stage = last.inner
    assert stages == [
        (1, "Split", (12, 16, 16), 6),
        (1, "Split", (24, 8, 8), 12),
        (1, "CenterReadout"),
    ]
    readout = stage[len(stage) - 1]
    assert isinstance(readout, CenterReadout) and readout.in_shape == (48, 4, 4)
    # z_s must be the first 10 channels of the top map at (2, 2): read the map before the
    # read-out through a hook and compare.
    seen: list[torch.Tensor] = []
    readout.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z_s, z_n = model.split(model.eval()(x)[0])
    top = seen[0]
    assert top.shape == (2, 48, 4, 4) and torch.equal(z_s, top[:, :10, 2, 2])
    assert z_n.shape == (2, 3 * 32 * 32 - 10)


def test_center_readout_is_a_permutation_with_an_exact_inverse() -> None:
    r = CenterReadout((5, 3, 4), 4)
    x = torch.arange(60.0).reshape(1, 5, 3, 4)
    z, logdet = r(x)
    centre = [c * 12 + 1 * 4 + 2 for c in range(4)]
    rest = [i for i in range(60) if i not in centre]
    assert z[0].tolist() == [float(i) for i in centre + rest]
    assert torch.equal(r.inverse(z), x) and logdet.tolist() == [0.0]
    with pytest.raises(ShapeError, match="k=6"):
        CenterReadout((5, 3, 4), 6)
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        CenterReadout((5,), 1)
    with pytest.raises(ShapeError, match="got samples of shape"):
        r(torch.zeros(1, 5, 4, 3))


def test_stage_blocks_override_blocks_per_stage() -> None:
    def couplings(m: torch.nn.Module) -> int:
        return sum(type(b).__name__ == "AdditiveCoupling" for b in m.modules())

    deep = _tiny(stage_blocks=(3, 1), blocks_per_stage=7)
    assert couplings(deep) == 4
    first_stage = [type(b).__name__ for b in deep.net]
    assert first_stage.count("AdditiveCoupling") == 3
    assert couplings(_tiny(blocks_per_stage=2)) == 4
    dense = FiRevNet((6,), 2, stages=2, stage_blocks=[2, 3], hidden=4, batch_norm=False)
    assert couplings(dense) == 0
    assert sum(type(b).__name__ == "AffineCoupling" for b in dense.net) == 5
    assert FiRevNetConfig(stages=2, stage_blocks=[3, 1]) == FiRevNetConfig(
        stages=2, stage_blocks=(3, 1)
    )


def test_config_survives_json_and_a_checkpoint(tmp_path: Path) -> None:
    model = _tiny(readout="center", stage_blocks=(2, 1), logit_norm=True)
    config = json.loads(json.dumps(model.config))
    assert config == model.config and config["stage_blocks"] == [2, 1]
    clone = FiRevNet(**config)
    assert clone.config == model.config and clone.cfg == model.cfg
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.train()
    model.logits(torch.rand(8, 1, 8, 8))  # move the running statistics of logit_bn
    path = save_checkpoint(tmp_path / "m.safetensors", model=model, state={"config": config})
    fresh = FiRevNet(
        **load_checkpoint(path, model=clone, expected_model_class="FiRevNet")["config"]
    )
    fresh.load_state_dict(clone.state_dict())
    x = torch.rand(3, 1, 8, 8)
    for net in (model, clone, fresh):
        net.eval()
    with torch.no_grad():
        assert torch.equal(fresh.logits(x), model.logits(x))
        assert torch.equal(fresh(x)[0], model(x)[0]) and torch.equal(fresh(x)[1], model(x)[1])


def test_logit_norm_normalises_the_logits_and_leaves_the_bijection_alone() -> None:
    torch.manual_seed(0)
    plain = _tiny()
    normed = _tiny(logit_norm=True)
    assert "logit_bn" not in dict(plain.named_children())
    assert isinstance(normed.logit_bn, torch.nn.BatchNorm1d) and normed.logit_bn.affine
    normed.net.load_state_dict(plain.net.state_dict())
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        normed.logit_bn.weight.fill_(2.0)
        normed.logit_bn.bias.fill_(0.5)
        z, logdet = plain.train()(x)
        z_n, logdet_n = normed.train()(x)
        assert torch.equal(z, z_n) and torch.equal(logdet, logdet_n)
        z_s = normed.split(z_n)[0]
        assert torch.equal(z_s, z[:, :3])  # split stays the raw code
        assert torch.equal(plain.classify(z_s), z_s)
        expected = 2.0 * (z_s - z_s.mean(0)) / torch.sqrt(z_s.var(0, unbiased=False) + 1e-5) + 0.5
        assert torch.allclose(normed.logits(x), expected, atol=1e-5)
        normed.eval()
        # In eval mode the running statistics are used, and a metamer keeps the logits.
        z_e = normed(x)[0]
        z_s_e, z_n_e = normed.split(z_e)
        met = normed.inverse(normed.merge(z_s_e[:1].expand(4, -1), z_n_e[:4]))
        assert torch.allclose(normed.logits(met), normed.logits(x[:1]).expand(4, -1), atol=1e-5)
        assert torch.equal(logits_of(normed, x), normed.classify(z_s_e))
    assert isinstance(normed, BijectiveClassifier)


def test_logit_norm_parameters_get_gradients_and_evaluation_uses_them() -> None:
    torch.manual_seed(0)
    model = _tiny(logit_norm=True, stage_blocks=(2, 1), readout="center")
    with torch.no_grad():  # zero-initialised last layers would block the gradients before them
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 3, (8,))
    z, logdet = model.train()(x)
    loss = torch.nn.functional.cross_entropy(model.classify(model.split(z)[0]), y)
    (loss - 1e-3 * logdet.mean() + 1e-3 * z.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name
    trainer = Trainer(model, (x, y), None, TrainConfig(device="cpu", epochs=1), progress=False)
    with torch.no_grad():
        model.logit_bn.weight.zero_()
        model.logit_bn.bias.copy_(torch.tensor([-5.0, 5.0, 0.0]))
    # With a zero scale the normalised logits are the bias for every input: evaluation that
    # goes through classify has exactly this loss and accuracy.
    bias = model.logit_bn.bias.detach()[None]
    expected = float(torch.nn.functional.cross_entropy(bias, torch.ones(1, dtype=torch.long)))
    metrics = trainer.evaluate(x, torch.ones(8, dtype=torch.long))
    assert metrics["accuracy"] == 1.0 and metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert model.training  # evaluate restores the mode
    with pytest.raises(ShapeError, match="classify"):
        model.classify(torch.zeros(2, 4))


def test_logit_norm_with_memory_saving_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = _tiny(logit_norm=True, readout="center").double()
    saving = _tiny(logit_norm=True, readout="center", memory_saving=True).double()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    saving.load_state_dict(plain.state_dict())
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    grads = []
    for model in (plain, saving):
        z, logdet = model.train()(x)
        ce = torch.nn.functional.cross_entropy(model.classify(model.split(z)[0]), y)
        grads.append(torch.autograd.grad(ce - 1e-2 * logdet.mean(), list(model.parameters())))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
