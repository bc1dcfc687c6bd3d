r"""``preimage run ims-classify``: IMS tumour typing, IsotopeNet vs ResidualNet vs ROC/LDA.

The thesis' chapter 7 experiment (section 7.4, figure 7.5): randomised 4-fold cross-validation
grouped by TMA; ROC/LDA with :math:`K = 5..100` features (worst and best :math:`K`), ResidualNet
(table A.1) and IsotopeNet (table 7.2) trained four times each with table A.2's settings
(median and IQR of the balanced accuracy at spot and core level); per-fold box plots; the
class-averaged input-gradient sensitivity of IsotopeNet over m/z with the planted peptides
marked; the bins per averagine isotope pattern over mass against IsotopeNet's receptive field
(figure 7.3) and the TOF bin widths (figure 7.4).

Data: the synthetic TMAs of :func:`~preimage.data.synthetic_tma` (``-o task=adsq|lp``; the
``smoke`` budget uses the ``tiny`` preset), or real data with ``-o imzml=PATH -o
metadata=CSV`` (columns ``tma``, ``core``, ``label``, optional ``roi``; keyed by ``spot`` or
``x``/``y``). Targets on synthetic data: IsotopeNet above ROC/LDA's best :math:`K` at spot and
core level; with ``-o class_signal=0`` every method at balanced accuracy :math:`0.5 \pm 0.05`
instead (no leakage across TMAs).

Deviations, and why: the ``cpu`` budget keeps the ``adsq`` preset's whole hierarchy (4 672 ROI
spectra, 228 cores on 12 TMAs, as the thesis) but cuts the m/z range to 1000-1400 (2 454 bins)
and the training to fit 45 minutes of one core: 2 repetitions instead of 4, :math:`K` in steps
of 5, ResidualNet at a quarter of table A.1's maps for 3 epochs, IsotopeNet for 20 epochs with
batch 32, step size :math:`10^{-3}` decayed to 0 on a cosine, and :math:`\lambda = 0.005`.
Why (probes in BENCHMARKS.md, issue 16): the number of training spectra and cores limits
IsotopeNet far more than the number of bins (a 1 200-spectrum subset over-fits its 72 training
cores; a wider m/z range at 1 200 spectra did not help); table A.2's batch 256 and step size
:math:`5 \cdot 10^{-4}` learn too slowly for a budget of tens of epochs, and its
:math:`\lambda = 0.05` under-fits in 20 epochs; the cosine decay gave steadier and slightly higher
end-of-training accuracies than a constant or a step schedule (the thesis names none). The
``cpu`` budget also shifts every IsotopeNet training spectrum by a random whole number of bins in
:math:`\{-1, 0, 1\}` (:class:`~preimage.analysis.ims_protocol.SpectrumAugment`, ``iso.shift``),
an augmentation the thesis does not use: it encodes the peak mis-alignment it names (section
7.3.2, "mis-alignment of peaks"; section 7.5, "small mass mis-alignments") and the calibration
differences between measurements (TMAs), across which the grouped cross-validation transfers;
a random gain (``iso.gain_sd``), fractional shifts of up to 2 bins and an inner validation split
for choosing the epoch did not help, nor did weight averaging (EMA, SWA), label smoothing, batch
16 or 64, a step size of :math:`3 \cdot 10^{-3}` or test-time shifts at both levels (probes in
BENCHMARKS.md, issue 16, second and third pass). The ``paper`` budget restores
table A.2 (constant step size, no augmentation) and the full data. Table A.2's
:math:`\lambda` is applied as Keras' ``l2(\lambda)`` kernel regulariser,
:math:`\lambda\sum\lVert W\rVert^2` over the convolution, locally connected and dense kernels
added to the loss (``-o iso.l2_on=all`` gives torch's weight decay :math:`2\lambda` on every
parameter instead, which pulls batch-norm scales to zero: at :math:`\lambda = 0.05` it collapsed
IsotopeNet to a constant prediction). Network and block conventions are those of
:mod:`preimage.models.isotopenet`.

``-o task=lp`` keeps these settings on six times the spectra (27 475), so each IsotopeNet
training takes about six times as long as on ``adsq`` and two of them do not fit the ``cpu``
budget's 45 minutes; ``-o repeats=1 -o models=isotopenet`` trains one, and ``-o first_repeat``
lets further trainings run in other processes. The times per setting and the closest settings
measured are in BENCHMARKS.md (issue 16, fourth to seventh pass).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 7.2-7.4, tables 7.1, 7.2,
    A.1, A.2 and figures 7.3-7.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from preimage.analysis.ims_protocol import (
    AugmentedLoss,
    CosineLr,
    KernelL2Loss,
    SpectrumAugment,
    cross_validate_network,
    cross_validate_roc_lda,
    fold_scores,
    mann_whitney_auc,
    median_iqr,
    tma_folds,
)
from preimage.analysis.spectral_sensitivity import class_sensitivity
from preimage.data import ImsDataset, isotope_pattern_bins, load_imzml, synthetic_tma
from preimage.errors import ConfigError
from preimage.models import IsotopeNet, ResidualNet1D, count_parameters
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import Callback, TrainConfig

__all__ = ["NULL_TOLERANCE", "TABLE_A2", "Config", "NetSettings", "roc_ranking", "run"]

NULL_TOLERANCE = 0.05
"""Without class signal every balanced accuracy must lie within 0.5 +- this."""

TABLE_A2: dict[str, dict[str, dict[str, float]]] = {
    "adsq": {
        "isotopenet": {"l2": 0.05, "lr": 5e-4, "batch_size": 256, "epochs": 300},
        "residualnet": {"l2": 0.05, "lr": 5e-4, "batch_size": 64, "epochs": 100},
    },
    "lp": {
        "isotopenet": {"l2": 0.01, "lr": 5e-4, "batch_size": 256, "epochs": 30},
        "residualnet": {"l2": 0.001, "lr": 5e-4, "batch_size": 64, "epochs": 30},
    },
}
"""Table A.2 per task and network: l2 coefficient, Adam step size, batch size, epochs."""

_INTRO = (
    "Thesis chapter 7 (section 7.4, figure 7.5): tumour typing from IMS spectra with randomised "
    "4-fold cross-validation grouped by TMA. ROC/LDA (Mann-Whitney bin ranking, top K = 5..100, "
    "LDA; worst and best K), ResidualNet (table A.1) and IsotopeNet (table 7.2), each network "
    "trained repeatedly (median and IQR of the balanced accuracy at spot and core level, a core "
    "taking the majority vote of its spots). Also: per-fold box plots, IsotopeNet's class-averaged "
    "input-gradient sensitivity over m/z, and the bins per averagine isotope pattern against the "
    "receptive field (figures 7.3, 7.4)."
)

_NAMES = {"roclda": "ROC/LDA", "residualnet": "ResidualNet", "isotopenet": "IsotopeNet"}


@dataclass(frozen=True)
class NetSettings:
    """Training settings of one network; ``None`` takes table A.2's value for the task.

    Attributes:
        epochs: passes over the training folds.
        batch_size: spectra per Adam step.
        lr: Adam step size.
        l2: Keras-style l2 coefficient :math:`\\lambda` (see ``l2_on``).
        l2_on: ``"kernels"``: :math:`\\lambda\\sum\\lVert W\\rVert^2` over the convolution,
            locally connected and dense kernels added to the loss (Keras' ``kernel_regularizer``,
            :class:`~preimage.analysis.ims_protocol.KernelL2Loss`); ``"all"``: torch weight decay
            :math:`2\\lambda` on every parameter, batch-norm scales and biases included.
        lr_schedule: ``"constant"`` (table A.2 gives one step size) or ``"cosine"`` (decay to 0
            over the training, :class:`~preimage.analysis.ims_protocol.CosineLr`).
        shift: training-time m/z shift of each spectrum by up to this many bins (0: none; the
            thesis uses no augmentation), :class:`~preimage.analysis.ims_protocol.SpectrumAugment`.
        gain_sd: sd of a training-time log-normal gain on each spectrum (0: none).
        max_steps_per_epoch: cut epochs short (smoke runs).
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    l2: float | None = None
    l2_on: Literal["kernels", "all"] = "kernels"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    shift: int = 0
    gain_sd: float = 0.0
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        self.augment()  # validates shift and gain_sd
        if self.l2_on not in ("kernels", "all"):
            raise ConfigError(f"l2_on must be 'kernels' or 'all', got {self.l2_on!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )

    def _pick(self, task: str, model: str, name: str) -> float:
        value = getattr(self, name)
        return float(TABLE_A2[task][model][name] if value is None else value)

    def train_config(self, task: str, model: str, *, seed: int, device: str) -> TrainConfig:
        """The :class:`TrainConfig` of ``model`` for ``task``."""
        l2 = self._pick(task, model, "l2")
        return TrainConfig(
            epochs=int(self._pick(task, model, "epochs")),
            batch_size=int(self._pick(task, model, "batch_size")),
            lr=self._pick(task, model, "lr"),
            optimizer="adam",
            weight_decay=2.0 * l2 if self.l2_on == "all" else 0.0,
            lr_decay=1.0,
            max_shift=0,
            dequantize=False,
            seed=seed,
            device=device,
            max_steps_per_epoch=self.max_steps_per_epoch,
        )

    def augment(self) -> SpectrumAugment:
        """The training-time augmentation of the spectra (inactive by default)."""
        return SpectrumAugment(max_shift=self.shift, gain_sd=self.gain_sd)

    def loss_fn(self, task: str, model: str) -> KernelL2Loss | AugmentedLoss:
        """The objective: cross-entropy, plus the kernel penalty when ``l2_on="kernels"``, on
        augmented spectra when :meth:`augment` is active."""
        loss = KernelL2Loss(self._pick(task, model, "l2") if self.l2_on == "kernels" else 0.0)
        augment = self.augment()
        return AugmentedLoss(loss, augment) if augment.active else loss

    def callbacks(self) -> list[Callback]:
        """The learning-rate schedule's callback, if any."""
        return [CosineLr()] if self.lr_schedule == "cosine" else []


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the IMS tumour-typing study (defaults: the ``cpu`` budget).

    Attributes:
        task: ``"adsq"`` or ``"lp"``: the synthetic preset and table A.2's settings.
        preset: synthetic preset to draw instead of the task's (the ``smoke`` budget: ``tiny``).
        imzml: real data: an imzML file (then no synthetic data are drawn).
        metadata: the CSV table of the imzML file's spots (tma, core, label, roi).
        class_signal: factor on the synthetic class effect; 0 gives a null data set.
        mz_lo: lower m/z of the synthetic data (``None``: the preset's).
        mz_hi: upper m/z of the synthetic data.
        n_spots: spectra of the synthetic data (``None``: the preset's).
        n_cores: cores of the synthetic data (``None``: the preset's).
        n_folds: cross-validation folds (grouped by TMA).
        repeats: trainings of each network (thesis: 4).
        first_repeat: index of the first training (its seeds); with ``repeats`` it splits the
            trainings across processes: ``first_repeat=2 repeats=2`` runs the third and fourth.
        k_step: step of the ROC/LDA feature counts in 5..100 (thesis: 1).
        models: networks to train, of ``"isotopenet"``, ``"residualnet"``.
        iso: IsotopeNet training settings.
        res: ResidualNet training settings.
        res_width: factor on ResidualNet's feature maps (1: table A.1).
        dropout: IsotopeNet's dropout (table A.2: 0.3).
        iso_maps: IsotopeNet's feature maps in its first three residual layers (table 7.2: 8).
        pattern_sigma: Gaussian peak width (Da) for the isotope-pattern widths of figure 7.3.
    """

    task: Literal["adsq", "lp"] = "adsq"
    preset: Literal["adsq", "lp", "tiny"] | None = None
    imzml: str | None = None
    metadata: str | None = None
    class_signal: float = 1.0
    mz_lo: float | None = 1000.0
    mz_hi: float | None = 1400.0
    n_spots: int | None = None
    n_cores: int | None = None
    n_folds: int = 4
    repeats: int = 2
    first_repeat: int = 0
    k_step: int = 5
    models: tuple[str, ...] = ("isotopenet", "residualnet")
    iso: NetSettings = field(
        default_factory=lambda: NetSettings(
            epochs=20, batch_size=32, lr=1e-3, l2=0.005, lr_schedule="cosine", shift=1
        )
    )
    res: NetSettings = field(default_factory=lambda: NetSettings(epochs=3))
    res_width: float = 0.25
    dropout: float = 0.3
    iso_maps: int = 8
    pattern_sigma: float = 0.08

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repeats < 1 or self.first_repeat < 0:
            raise ConfigError(
                f"need repeats >= 1 and first_repeat >= 0, got {self.repeats}, {self.first_repeat}"
            )
        if self.iso_maps < 1:
            raise ConfigError(f"iso_maps must be >= 1, got {self.iso_maps}")

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "preset": "tiny",
            "mz_lo": None,
            "mz_hi": None,
            "n_spots": None,
            "n_cores": None,
            "repeats": 1,
            "k_step": 19,
            "iso.epochs": 2,
            "iso.max_steps_per_epoch": 1,
            "res.epochs": 1,
            "res.max_steps_per_epoch": 1,
            "res_width": 0.125,
        },
        "cpu": {},
        "paper": {
            "mz_lo": None,
            "mz_hi": None,
            "n_spots": None,
            "n_cores": None,
            "repeats": 4,
            "k_step": 1,
            "iso.epochs": None,
            "iso.batch_size": None,
            "iso.lr": None,
            "iso.l2": None,
            "iso.lr_schedule": "constant",
            "iso.shift": 0,
            "res.epochs": None,
            "res_width": 1.0,
        },
    }


def _data(config: Config) -> ImsDataset:
    if config.imzml is not None:
        return load_imzml(config.imzml, config.metadata)
    overrides: dict[str, Any] = {"class_signal": config.class_signal}
    for name in ("mz_lo", "mz_hi", "n_spots", "n_cores"):
        if getattr(config, name) is not None:
            overrides[name] = getattr(config, name)
    return synthetic_tma(config.preset or config.task, seed=config.seed, **overrides)


def _builder(config: Config, name: str, n_bins: int) -> Any:
    if name == "isotopenet":
        return lambda: IsotopeNet((1, n_bins), 2, dropout=config.dropout, maps=config.iso_maps)
    if name == "residualnet":
        return lambda: ResidualNet1D((1, n_bins), 2, width=config.res_width)
    raise ConfigError(f"unknown model {name!r}; use isotopenet or residualnet")


def _roc_lda(
    data: ImsDataset, folds: list[tuple[np.ndarray, np.ndarray]], k_step: int
) -> tuple[dict[str, Any], list[float]]:
    """The data's sizes, the folds' TMA overlap and ROC/LDA at every K (worst and best).

    Returns:
        The metrics and the per-fold spot scores of the best K (for the box plot).
    """
    x, y, core = data.spectra, data.label, data.core
    shared = max(len(set(data.tma[tr]) & set(data.tma[te])) for tr, te in folds)
    ks = list(range(5, min(100, data.n_bins) + 1, k_step))
    roc = cross_validate_roc_lda(x, y, folds, ks)
    roc_spot = {k: cv.spot_accuracy(y) for k, cv in roc.items()}
    roc_core = {k: cv.core_accuracy(y, core) for k, cv in roc.items()}
    best_k = max(roc_spot, key=lambda k: roc_spot[k])
    metrics: dict[str, Any] = {
        "n_spots": data.n_spots,
        "n_bins": data.n_bins,
        "n_cores": int(np.unique(core).size),
        "n_tmas": int(np.unique(data.tma).size),
        "folds_max_shared_tmas": shared,
        "roclda_spot_worst": min(roc_spot.values()),
        "roclda_spot_best": roc_spot[best_k],
        "roclda_core_worst": min(roc_core.values()),
        "roclda_core_best": max(roc_core.values()),
        "roclda_best_k": best_k,
    }
    return metrics, fold_scores(roc[best_k].predictions, y, core, folds)[0]


@study_entry(
    "ims-classify",
    title="IMS tumour typing (thesis ch. 7)",
    intro=_INTRO,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics."""
    study.seed()
    data = _data(config)
    if not np.array_equal(np.unique(data.label), [0, 1]):
        raise ConfigError("ims-classify needs labels 0 and 1 for every spot (see metadata=)")
    x, y, core = data.spectra, data.label, data.core
    folds = tma_folds(data.tma, config.n_folds, seed=config.seed)
    metrics, roc_folds = _roc_lda(data, folds, config.k_step)
    per_fold = {"roclda": roc_folds}
    sensitivity = None
    for name in config.models:
        spot, per_core, boxes = [], [], []
        settings = config.iso if name == "isotopenet" else config.res
        for r in range(config.first_repeat, config.first_repeat + config.repeats):
            torch.manual_seed(config.seed + 1000 * r)
            cfg = settings.train_config(
                config.task, name, seed=config.seed + r, device=config.device
            )
            cv, models = cross_validate_network(
                _builder(config, name, data.n_bins),
                x,
                y,
                folds,
                cfg,
                loss_fn=settings.loss_fn(config.task, name),
                callbacks=settings.callbacks(),
                progress=config.progress,
            )
            spot.append(cv.spot_accuracy(y))
            per_core.append(cv.core_accuracy(y, core))
            boxes += fold_scores(cv.predictions, y, core, folds)[0]
            if name == "isotopenet" and r == config.first_repeat:
                sensitivity = np.mean(
                    [
                        class_sensitivity(m, x[te], y[te], num_classes=2)
                        for m, (_, te) in zip(models, folds, strict=True)
                    ],
                    axis=0,
                )
                metrics["isotopenet_parameters"] = count_parameters(models[0])
                metrics["isotopenet_receptive_field"] = models[0].receptive_field()
        per_fold[name] = boxes
        metrics[f"{name}_spot_median"], metrics[f"{name}_spot_iqr"] = median_iqr(spot)
        metrics[f"{name}_core_median"], metrics[f"{name}_core_iqr"] = median_iqr(per_core)
    if data.planted_mz.size:
        metrics["roclda_top10_planted_fraction"] = _planted_fraction(data, roc_ranking(x, y), 10)
        # Chance level of that share: the fraction of all bins on a planted envelope.
        every_bin = np.arange(data.n_bins)
        metrics["planted_bins_fraction"] = _planted_fraction(data, every_bin, data.n_bins)
    _report(study, config, data, metrics, per_fold, sensitivity)
    _targets(study, config, metrics)
    return study.finish(metrics)


def roc_ranking(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bins by ROC discriminative power on all spots (for the planted-peptide check only)."""
    return np.argsort(-np.abs(mann_whitney_auc(x, y) - 0.5), kind="stable")


def _planted_fraction(data: ImsDataset, ranking: np.ndarray, top: int) -> float:
    """Share of the ``top`` ROC bins on a planted peptide's envelope (first peak to +5 Da)."""
    mz = data.mz[ranking[:top]]
    near = (mz[:, None] >= data.planted_mz[None, :] - 0.3) & (
        mz[:, None] <= data.planted_mz[None, :] + 5.0
    )
    return float(near.any(axis=1).mean())


def _targets(study: StudyRun, config: Config, metrics: dict[str, Any]) -> None:
    study.check("folds_share_no_tma", metrics["folds_max_shared_tmas"], "== 0")
    null = config.imzml is None and config.class_signal == 0.0
    if null:
        for key in ("roclda_spot_worst", "roclda_spot_best"):
            dev = abs(metrics[key] - 0.5)
            study.check(
                f"null_{key}", metrics[key], f"0.5 +- {NULL_TOLERANCE}", met=dev <= NULL_TOLERANCE
            )
        for name in config.models:
            value = metrics[f"{name}_spot_median"]
            dev = abs(value - 0.5)
            study.check(
                f"null_{name}_spot", value, f"0.5 +- {NULL_TOLERANCE}", met=dev <= NULL_TOLERANCE
            )
        return
    if "isotopenet" in config.models:
        for level in ("spot", "core"):
            gap = metrics[f"isotopenet_{level}_median"] - metrics[f"roclda_{level}_best"]
            metrics[f"isotopenet_minus_roclda_{level}"] = gap
            study.check(f"isotopenet_above_roclda_{level}", gap, "> 0")


def _report(
    study: StudyRun,
    config: Config,
    data: ImsDataset,
    metrics: dict[str, Any],
    per_fold: dict[str, list[float]],
    sensitivity: np.ndarray | None,
) -> None:
    source = config.imzml or f"synthetic preset {config.preset or config.task!r}"
    study.text(
        f"Data: {source}, {data.n_spots} spectra, {data.n_bins} bins "
        f"(m/z {data.mz[0]:.0f}-{data.mz[-1]:.0f}), {metrics['n_cores']} cores on "
        f"{metrics['n_tmas']} TMAs, class signal {config.class_signal:g}."
    )
    rows = [
        {
            "method": "ROC/LDA (worst K)",
            "spot": metrics["roclda_spot_worst"],
            "core": metrics["roclda_core_worst"],
        },
        {
            "method": f"ROC/LDA (best K={metrics['roclda_best_k']})",
            "spot": metrics["roclda_spot_best"],
            "core": metrics["roclda_core_best"],
        },
    ]
    for name in config.models:
        rows.append(
            {
                "method": _NAMES[name],
                "spot": f"{metrics[f'{name}_spot_median']:.3f} ± {metrics[f'{name}_spot_iqr']:.3f}",
                "core": f"{metrics[f'{name}_core_median']:.3f} ± {metrics[f'{name}_core_iqr']:.3f}",
            }
        )
    study.table(
        rows, title="Balanced accuracy, 4-fold CV by TMA (figure 7.5 left; networks: median ± IQR)"
    )
    study.figure(
        _box_figure(per_fold),
        "folds",
        "Spot-level balanced accuracy per fold (figure 7.5 right): ROC/LDA at its best K; "
        "networks: every fold of every repetition.",
    )
    if sensitivity is not None:
        study.figure(
            _sensitivity_figure(data, sensitivity),
            "sensitivity",
            "IsotopeNet: input gradient of the true class's logit averaged over each class's "
            "test spots (first repetition, all folds); red lines: planted peptides "
            "(monoisotopic m/z).",
        )
    study.figure(
        _pattern_figure(data, config, metrics.get("isotopenet_receptive_field")),
        "isotope_width",
        "Left (figure 7.3): bins covered per averagine isotope pattern over mass (blue) and "
        "IsotopeNet's receptive field (red). Right (figure 7.4): bin width over m/z and its "
        "mean.",
    )


def _box_figure(per_fold: dict[str, list[float]]) -> Figure:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    ax.boxplot(list(per_fold.values()), tick_labels=[_NAMES[k] for k in per_fold])
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("balanced accuracy (spot)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _sensitivity_figure(data: ImsDataset, sensitivity: np.ndarray) -> Figure:
    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for c, ax in enumerate(axes):
        ax.plot(data.mz, sensitivity[c], lw=0.6)
        for m in data.planted_mz:
            ax.axvline(m, color="red", lw=0.6, alpha=0.5)
        ax.set_ylabel(f"class {c}: ∂f/∂x")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("m/z")
    return fig


def _pattern_figure(data: ImsDataset, config: Config, rf: int | None) -> Figure:
    edges = np.concatenate(
        [
            [1.5 * data.mz[0] - 0.5 * data.mz[1]],
            0.5 * (data.mz[1:] + data.mz[:-1]),
            [1.5 * data.mz[-1] - 0.5 * data.mz[-2]],
        ]
    )
    masses = np.linspace(data.mz[0] + 1, data.mz[-1] - 10, 400)
    bins, _ = isotope_pattern_bins(masses, edges, sigma=config.pattern_sigma)
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(masses, bins, label="isotope pattern")
    if rf is not None:
        left.axhline(rf, color="red", label=f"receptive field ({rf})")
    left.set_xlabel("m/z")
    left.set_ylabel("bins")
    left.legend(fontsize="small")
    width = np.diff(edges)
    right.plot(data.mz, width, label="bin width")
    right.axhline(width.mean(), color="red", label=f"mean {width.mean():.3f} Da")
    right.set_xlabel("m/z")
    right.set_ylabel("Da")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig
