from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from preimage.attacks.base import Bounds
from preimage.attacks.unbounded import (
    UnboundedGradientAttack,
    class_prototypes,
    gaussian_noise_at_snr,
)
from preimage.errors import ConfigError
from preimage.information.gaussian import snr_db


def _linear(d: int = 6, c: int = 3, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, c).double()


def test_l2_steps_have_exact_length_on_a_linear_model() -> None:
    # For two classes the input gradient of the CE is (p - onehot) @ W: a fixed direction
    # (W[1] - W[0]) up to a positive factor, so every normalised step adds up in one line.
    net = _linear(c=2)
    x = torch.randn(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    r = UnboundedGradientAttack(norm="l2", step=0.05, steps=10)(net, x, y)
    assert torch.allclose(r.distance, torch.full((4,), 0.5, dtype=torch.float64))
    traj = r.extras["trajectory"]
    assert traj.shape == (11, 4, 6) and torch.equal(traj[0], x)
    losses = [F.cross_entropy(net(t), y, reduction="none") for t in traj]
    assert all(bool((b > a).all()) for a, b in itertools.pairwise(losses))
    # The SNR of the recorded iterates falls monotonically.
    snrs = torch.stack([snr_db(x, t - x) for t in traj[1:]])
    assert bool((snrs[1:] < snrs[:-1]).all())


def test_linf_steps_move_every_coordinate_by_the_step() -> None:
    net = _linear(c=2)
    x = torch.randn(3, 6, dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    r = UnboundedGradientAttack(norm="linf", step=0.01, steps=7)(net, x, y)
    assert torch.allclose((r.x_adv - x).abs(), torch.full_like(x, 0.07))
    assert torch.allclose(r.distance, torch.full((3,), 0.07 * math.sqrt(6), dtype=torch.float64))


def test_unbounded_attack_eventually_fools_and_leaves_inputs_alone() -> None:
    net = _linear()
    x = 3.0 * torch.randn(16, 6, dtype=torch.float64)
    y = net(x).argmax(1)
    before = x.clone()
    r = UnboundedGradientAttack(norm="l2", step=0.5, steps=200, record_every=50)(net, x, y)
    assert r.success.all()
    assert torch.equal(x, before)
    assert r.extras["steps"] == [0, 50, 100, 150, 200]
    # Bounded variant keeps iterates in the box.
    xb = torch.rand(16, 6, dtype=torch.float64)
    rb = UnboundedGradientAttack(step=0.5, steps=20, bounds=Bounds(0.0, 1.0))(net, xb, y)
    assert rb.extras["trajectory"].min() >= 0.0 and rb.extras["trajectory"].max() <= 1.0


@pytest.mark.parametrize(
    ("definition", "target"), [("ratio", -3.0), ("ratio", 25.0), ("one_plus", 6.0)]
)
def test_gaussian_noise_hits_the_snr(definition: str, target: float) -> None:
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) + 0.1
    gen = torch.Generator().manual_seed(0)
    noisy = gaussian_noise_at_snr(x, target, definition=definition, generator=gen)  # type: ignore[arg-type]
    got = snr_db(x, noisy - x, definition=definition)  # type: ignore[arg-type]
    assert torch.allclose(got, torch.full((5,), target, dtype=torch.float64))
    delta = (noisy - x).flatten(1)
    assert abs(float(torch.corrcoef(delta[:2])[0, 1])) < 0.9  # independent draws
    with pytest.raises(ConfigError):
        gaussian_noise_at_snr(x, 0.0, definition="one_plus")


def test_class_prototypes_reach_confidence() -> None:
    net = _linear(d=8, c=4, seed=1)
    mean = torch.full((8,), 0.5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    protos, steps, conf = class_prototypes(net, mean, 0.3, 4, step=20.0, generator=gen)
    assert protos.shape == (4, 8)
    assert net(protos).argmax(1).tolist() == [0, 1, 2, 3]
    assert bool((conf >= 0.9995).all()) and bool((steps < 10_000).all())
    # Descending one label's loss stops as soon as it is confident: the last step crossed it.
    probs = net(protos).softmax(1).diagonal()
    assert torch.allclose(probs, conf)
    with pytest.raises(ConfigError):
        class_prototypes(net, mean, 0.3, 4, confidence=1.0)


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        UnboundedGradientAttack(norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        UnboundedGradientAttack(step=0.0)
