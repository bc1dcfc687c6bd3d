"""The thesis' protocol: TMA-grouped folds, core votes, ROC/LDA and network cross-validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from torch import nn

from preimage.analysis.ims_protocol import (
    AugmentedLoss,
    CosineLr,
    KernelL2Loss,
    SpectrumAugment,
    core_balanced_accuracy,
    core_vote,
    cross_validate_network,
    cross_validate_roc_lda,
    fold_scores,
    mann_whitney_auc,
    median_iqr,
    roc_lda_predict,
    shift_spectra,
    tma_folds,
)
from preimage.errors import ConfigError, DataError, ShapeError
from preimage.models import IsotopeNet
from preimage.train import Callback, TrainConfig, Trainer


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 15), min_size=8, max_size=80),
    st.integers(2, 5),
    st.integers(0, 10**6),
)
def test_folds_never_share_a_tma(tma: list[int], n_folds: int, seed: int) -> None:
    groups = np.array(tma)
    if np.unique(groups).size < n_folds:
        with pytest.raises(ConfigError):
            tma_folds(groups, n_folds, seed=seed)
        return
    folds = tma_folds(groups, n_folds, seed=seed)
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(groups.size))  # each spot tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert np.union1d(train, test).size == groups.size
        assert test.size > 0


def test_folds_are_randomised_and_balanced() -> None:
    tma = np.repeat(np.arange(12), 5)
    a, b = tma_folds(tma, 4, seed=0), tma_folds(tma, 4, seed=1)
    assert all(np.unique(tma[te]).size == 3 for _, te in a)
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_core_vote_takes_the_majority() -> None:
    pred = np.array([1, 1, 0, 0, 0, 1, 1, 0])
    core = np.array([5, 5, 5, 9, 9, 9, 2, 2])
    label = np.array([1, 1, 1, 0, 0, 0, 1, 1])
    cores, core_label, core_pred = core_vote(pred, core, label)
    assert cores.tolist() == [2, 5, 9]
    assert core_label.tolist() == [1, 1, 0]
    assert core_pred.tolist() == [0, 1, 0]  # the 1:1 tie of core 2 goes to class 0
    assert core_balanced_accuracy(label, pred, core) == pytest.approx(0.75)
    with pytest.raises(DataError):
        core_vote([0, 1], [3, 3], [0, 1])


def test_mann_whitney_auc_equals_roc_auc() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.arange(60) % 2
    x[:, 2] += y
    expected = [roc_auc_score(y, x[:, j]) for j in range(5)]
    np.testing.assert_allclose(mann_whitney_auc(x, y), expected)


def test_roc_lda_finds_a_planted_single_bin() -> None:
    rng = np.random.default_rng(4)
    n, d, planted = 400, 300, 137
    y = rng.permutation(np.arange(n) % 2)
    x = rng.lognormal(size=(n, d))
    x[:, planted] += 3.0 * y
    ranking, preds = roc_lda_predict(x[:300], y[:300], x[300:], ks=[1, 5, 50])
    assert ranking[0] == planted
    accuracy = [np.mean(p == y[300:]) for p in preds]
    assert accuracy[0] > 0.75
    # Without the planted bin the signal is gone.
    x[:, planted] = rng.lognormal(size=n)
    _, preds = roc_lda_predict(x[:300], y[:300], x[300:], ks=[1])
    assert np.mean(preds[0] == y[300:]) < 0.65


def test_cross_validated_roc_lda_per_k_and_fold() -> None:
    rng = np.random.default_rng(2)
    tma = np.repeat(np.arange(8), 30)
    y = np.tile(np.arange(2), 120)
    core = np.arange(240) // 5
    y = y[core * 5]  # one label per core
    x = rng.normal(size=(240, 40))
    x[:, 11] += 2.0 * y
    folds = tma_folds(tma, 4, seed=0)
    cv = cross_validate_roc_lda(x, y, folds, ks=[5, 10])
    assert set(cv) == {5, 10}
    spot, per_core = fold_scores(cv[5].predictions, y, core, folds)
    assert len(spot) == 4 and min(spot) > 0.7 and len(per_core) == 4
    assert cv[5].core_accuracy(y, core) >= cv[5].spot_accuracy(y) - 0.05


def _spectra_config(**settings: float) -> TrainConfig:
    """Adam on CPU without the image augmentations (spectra have none)."""
    return TrainConfig(optimizer="adam", max_shift=0, dequantize=False, device="cpu", **settings)


def test_cross_validate_network_predicts_every_spot_with_its_fold_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype(np.float32)
    y = (x[:, 3] > 0).astype(int)
    folds = tma_folds(np.arange(64) // 8, 4, seed=0)
    cfg = _spectra_config(epochs=30, batch_size=16, lr=0.05, weight_decay=0.0)
    cv, models = cross_validate_network(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), x, y, folds, cfg
    )
    assert len(models) == 4 and cv.scores is not None
    assert np.array_equal(cv.predictions, cv.scores.argmax(axis=1))
    assert cv.spot_accuracy(y) > 0.85
    # The fold models differ: each saw other TMAs.
    assert not np.allclose(models[0][1].weight.detach(), models[1][1].weight.detach())


def test_median_iqr() -> None:
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)
    with pytest.raises(ConfigError):
        median_iqr([])


def test_kernel_l2_penalises_kernels_but_not_batch_norm_or_biases() -> None:
    torch.manual_seed(0)
    net = IsotopeNet((1, 90), 2).eval()
    with torch.no_grad():  # batch-norm scales away from 1 so that a penalty on them would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.uniform_(0.5, 2.0)
    x, y = torch.rand(6, 1, 90), torch.tensor([0, 1, 0, 1, 1, 0])
    lam = 0.05
    plain, _ = KernelL2Loss(0.0)(net, x, y)
    penalised, metrics = KernelL2Loss(lam)(net, x, y)
    kernels = {n: p for n, p in net.named_parameters() if n.endswith("weight") and "bn" not in n}
    assert len(kernels) == 13  # 8 convolutions, 3 shortcut convolutions, locally connected, dense
    expected = lam * sum(float(p.detach().pow(2).sum()) for p in kernels.values())
    assert float(penalised.detach() - plain.detach()) == pytest.approx(expected, rel=1e-5)
    assert metrics["cross_entropy"] == pytest.approx(float(plain.detach()))
    grads = torch.autograd.grad(penalised - plain, list(net.parameters()), allow_unused=True)
    for (name, p), g in zip(net.named_parameters(), grads, strict=True):
        g = torch.zeros_like(p) if g is None else g
        want = 2 * lam * p.detach() if name in kernels else torch.zeros_like(p)
        assert torch.allclose(g, want, atol=1e-6), name
    with pytest.raises(ConfigError):
        KernelL2Loss(-1.0)


def test_cosine_lr_falls_to_zero_over_all_steps() -> None:
    seen: list[float] = []

    class Record(Callback):
        def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    x, y = torch.randn(20, 1, 4), torch.randint(0, 2, (20,))
    cfg = _spectra_config(epochs=3, batch_size=4, lr=0.2, lr_decay=1.0, max_steps_per_epoch=2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    trainer = Trainer(net, (x, y), None, cfg, callbacks=[CosineLr(), Record()], progress=False)
    trainer.fit()
    total = 3 * 2  # epochs x steps actually taken (max_steps_per_epoch caps the 5 batches)
    want = [0.1 * (1 + math.cos(math.pi * t / total)) for t in range(1, total + 1)]
    assert seen == pytest.approx(want)
    assert [h["lr"] for h in trainer.history] == pytest.approx([0.2, want[1], want[3]])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-4, 4), min_size=1, max_size=6), st.integers(12, 40))
def test_shift_spectra_moves_each_spectrum_by_its_shift(shifts: list[int], n: int) -> None:
    x = torch.randn(len(shifts), 2, n, dtype=torch.float64)
    out = shift_spectra(x, torch.tensor(shifts))
    for b, s in enumerate(shifts):
        source = np.clip(np.arange(n) - s, 0, n - 1)  # x'[j] = x[j - s], edge bins repeated
        assert torch.equal(out[b], x[b][:, source])


def test_shift_spectra_interpolates_fractional_shifts() -> None:
    x = torch.tensor([[[0.0, 10.0, 20.0, 30.0]]])
    out = shift_spectra(x, torch.tensor([0.25]))
    assert out[0, 0].tolist() == pytest.approx([0.0, 7.5, 17.5, 27.5])
    with pytest.raises(ShapeError):
        shift_spectra(x, torch.tensor([0.25, 1.0]))


def test_spectrum_augment_shifts_and_scales_by_the_drawn_amounts() -> None:
    n, b = 64, 200
    x = torch.zeros(b, 1, n, dtype=torch.float64)
    x[:, 0, 30] = 1.0
    out = SpectrumAugment(max_shift=3)(x, generator=torch.Generator().manual_seed(5))
    drawn = torch.randint(-3, 4, (b,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(out[:, 0].argmax(1) - 30, drawn)
    assert set(drawn.tolist()) == set(range(-3, 4))  # every shift in -m..m occurs
    assert torch.equal(out.sum(dim=(1, 2)), x.sum(dim=(1, 2)))  # a pure move, no scaling
    y = torch.rand(b, 1, n, dtype=torch.float64) + 0.5
    scaled = SpectrumAugment(gain_sd=0.3)(y, generator=torch.Generator().manual_seed(1))
    gain = scaled / y
    assert torch.allclose(gain, gain[:, :, :1].expand_as(gain))  # one gain per spectrum
    eps = torch.randn(b, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(gain[:, :, 0], (0.3 * eps[:, :, 0]).exp())
    assert not SpectrumAugment().active and SpectrumAugment(max_shift=1).active
    with pytest.raises(ConfigError):
        SpectrumAugment(max_shift=-1)


def test_augmented_loss_changes_the_inputs_only_while_training() -> None:
    seen: list[torch.Tensor] = []

    def record(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        seen.append(x)
        return x.sum(), {}

    x = torch.zeros(4, 1, 20)
    x[:, 0, 10] = 1.0
    loss = AugmentedLoss(record, SpectrumAugment(max_shift=2))
    net = nn.Linear(1, 1)
    torch.manual_seed(0)
    loss(net.train(), x, torch.zeros(4).long())
    loss(net.eval(), x, torch.zeros(4).long())
    torch.manual_seed(0)
    want = torch.randint(-2, 3, (4,))  # the global generator, which the trainer seeds per epoch
    assert torch.equal(seen[0][:, 0].argmax(1) - 10, want)
    assert seen[1] is x
