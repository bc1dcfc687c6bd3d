"""Tests of preimage.analysis.ice_game: the per-epoch game monitor and the probe-length curve."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from preimage.analysis.ice_game import IceGameMonitor, adversary_error, probe_length_curve
from preimage.analysis.invariance import fit_nuisance_probe
from preimage.errors import ConfigError
from preimage.losses.ice import IndependenceCrossEntropy
from preimage.train import TrainConfig, Trainer
from tests.attacks.toy import AffineInvertibleClassifier

DIM, CLASSES = 6, 2


def _toy() -> AffineInvertibleClassifier:
    return AffineInvertibleClassifier((DIM,), CLASSES, seed=3)


@torch.no_grad()
def _data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Inputs whose label is the sign of the toy's first nuisance entry: z_n holds it."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    z, _ = _toy()(x)
    return x, (z[:, CLASSES] > 0).long()


def test_monitor_tells_a_fooled_adversary_from_removed_information() -> None:
    """z_n of the toy holds the label; an adversary that never trained is at chance, a fresh
    probe reads the label: the monitor shows the gap a fooled adversary leaves."""
    toy = _toy()
    torch.manual_seed(0)
    ice = IndependenceCrossEntropy(toy, CLASSES, DIM - CLASSES, nuisance_hidden=16)
    train, test = _data(512, 1), _data(256, 2)
    monitor = IceGameMonitor(ice, train, test, epochs=60, hidden=16)
    record = monitor.measure(toy, epoch=1)
    assert record["game_probe_error"] < 0.1
    assert record["game_adversary_error"] > record["game_probe_error"] + 0.25


def test_monitor_writes_into_the_history_and_leaves_training_unchanged() -> None:
    x, y = _data(128, 4)
    cfg = TrainConfig(epochs=2, device="cpu", max_shift=0, dequantize=False, batch_size=32)
    histories = []
    for watch in (False, True):
        toy = _toy()
        torch.manual_seed(0)
        ice = IndependenceCrossEntropy(toy, CLASSES, DIM - CLASSES, nuisance_hidden=8)
        callbacks = [IceGameMonitor(ice, (x, y), (x, y), epochs=1, hidden=8)] if watch else []
        trainer = Trainer(toy, (x, y), None, cfg, loss_fn=ice, callbacks=callbacks, progress=False)
        trainer.fit()
        histories.append(trainer.history)
        if watch:
            assert [len(r) for r in callbacks[0].records] == [3, 3]
    assert all("game_probe_error" in h for h in histories[1])
    for plain, watched in zip(*histories, strict=True):
        assert plain["train_loss"] == watched["train_loss"]


def test_adversary_error_uses_the_adversary_features() -> None:
    toy = _toy()
    ice = IndependenceCrossEntropy(
        toy, CLASSES, DIM - CLASSES, nuisance_hidden=8, adversary_input="standardized"
    )
    z, y = _data(64, 5)
    z_n = z[:, CLASSES:]
    assert adversary_error(ice, 100.0 * z_n + 7.0, y) == adversary_error(ice, z_n, y)


def test_recorded_curve_equals_separate_runs_of_each_length() -> None:
    z, y = _data(256, 6)
    z_test, y_test = _data(128, 7)
    one = fit_nuisance_probe((z, y), (z_test, y_test), 2, hidden=8, epochs=1, record_epochs=(1, 3))
    alone = fit_nuisance_probe((z, y), (z_test, y_test), 2, hidden=8, epochs=3)
    assert one.curve[3] == alone.test_error == one.test_error
    first = fit_nuisance_probe((z, y), (z_test, y_test), 2, hidden=8, epochs=1)
    assert one.curve[1] == first.test_error


def test_probe_length_curve_rows_and_the_raw_input_option() -> None:
    toy = _toy()
    train, test = _data(256, 8), _data(128, 9)
    rows = probe_length_curve(toy, _data(512, 8), test, lengths=(1, 60), hidden=16)
    assert [(r["standardized"], r["epochs"]) for r in rows] == [
        (True, 1),
        (True, 60),
        (False, 1),
        (False, 60),
    ]
    assert all(0.0 <= r["test_error"] <= 1.0 for r in rows)
    # z_n of this toy holds the label: a long-trained probe reads it, a one-epoch probe not.
    assert max(r["test_error"] for r in rows if r["epochs"] == 60) < 0.1
    assert min(r["test_error"] for r in rows if r["epochs"] == 1) > 0.2
    with pytest.raises(ConfigError):
        probe_length_curve(toy, train, test, lengths=())


def test_monitor_refuses_another_loss() -> None:
    with pytest.raises(ConfigError, match="IndependenceCrossEntropy"):
        IceGameMonitor(torch.nn.MSELoss(), _data(8, 0), _data(8, 1))  # type: ignore[arg-type]
