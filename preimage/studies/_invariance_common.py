r"""Shared pieces of the excessive-invariance studies: data subsets, CE/iCE training, caching.

The MNIST studies (``metamers-mnist``, ``nuisance-info``, ``shiftmnist-*``,
``feature-adversaries``) train the same fully invertible RevNet with the paper's recipe
(:class:`~preimage.train.TrainConfig` defaults: Adamax, lr :math:`10^{-3}`, decay 0.2 every 30
epochs, batch 64, l2 :math:`10^{-4}`, shifts of 3 pixels, dequantisation) with either the plain
cross-entropy (``ce``) or the independence cross-entropy (``ice``,
:class:`~preimage.losses.IndependenceCrossEntropy` as the trainer's ``loss_fn``). Trained models
are written to ``checkpoints/<name>.safetensors`` of the run directory together with their
architecture, so that a later run can reuse them with ``-o model_dir=PATH``.

Deviation from the paper, and why: the ``cpu`` budgets use a CPU-sized network (3 stages of 2
blocks with 32 filters instead of 16 blocks with 128 filters) and few epochs; the ``paper``
budgets use the architecture and schedule of appendix D.2.

Sizing of the ``cpu`` budgets (45 minutes on 2 cores): the CPU-sized fi-RevNet trains at roughly
900 images/s with cross-entropy on two free cores, i.e. about 70 s per MNIST epoch. Measured
at the ``cpu`` budget with one thread while other studies shared the second core: CE 16 min and
iCE 23 min for 10 epochs (680 and 610 images/s), the width-32 ``cnn`` only about 130 images/s,
which is why the CNN baselines and oracles use width 16 there.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 4 and appendix D.2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from preimage.analysis.invariance import classification_error
from preimage.data import load_dataset
from preimage.errors import CheckpointError, ConfigError
from preimage.losses import IndependenceCrossEntropy
from preimage.models import MODELS, FiRevNet, build_model
from preimage.report import Report
from preimage.report.plots import save_figure
from preimage.runs import RunDir
from preimage.studies.base import StudyConfig
from preimage.train import (
    TrainConfig,
    Trainer,
    load_checkpoint,
    read_checkpoint_metadata,
    resolve_device,
    save_checkpoint,
)

__all__ = [
    "MNIST_PAPER",
    "MNIST_SMOKE",
    "OBJECTIVES",
    "IceStudyConfig",
    "MnistStudyConfig",
    "Target",
    "TrainedModel",
    "add_figure",
    "different_label_pairs",
    "error_on",
    "fallback_classifier",
    "finish_report",
    "firevnet_options",
    "load_mnist_subset",
    "load_study_data",
    "objective_models",
    "obtain_firevnet",
    "obtain_plain_classifier",
    "start_run",
    "study_firevnet",
    "study_firevnet_options",
    "study_train_config",
    "subset",
    "target_metrics",
    "train_config",
]

OBJECTIVES: tuple[str, ...] = ("ce", "ice")
"""Training objectives: cross-entropy and independence cross-entropy."""


@dataclass(frozen=True)
class MnistStudyConfig(StudyConfig):
    """Fields shared by the MNIST invariance studies (defaults: the ``cpu`` budget).

    Subclasses add their own fields after these and may change the defaults.

    Attributes:
        n_train: MNIST training images (``None``: all 60k).
        n_test: MNIST test images (``None``: all 10k).
        train_split: ``"train"``; the smoke budget trains on part of the test split (see
            :func:`load_mnist_subset`).
        epochs: training epochs of each model (paper: 100).
        lr_step: epochs between learning-rate decays (paper: 30).
        stages: fi-RevNet stages (paper: 3).
        blocks_per_stage: RevNet blocks per stage (paper: 16).
        hidden: filters per coupling layer (paper: 128).

    Example:
        >>> MnistStudyConfig.for_budget("smoke", **MNIST_SMOKE).train_split
        'test'
    """

    n_train: int | None = None
    n_test: int | None = None
    train_split: str = "train"
    epochs: int = 10
    lr_step: int = 4
    stages: int = 3
    blocks_per_stage: int = 2
    hidden: int = 32


@dataclass(frozen=True)
class IceStudyConfig(MnistStudyConfig):
    """:class:`MnistStudyConfig` of the studies that train fi-RevNets with CE and with iCE.

    Attributes:
        nuisance_hidden: units of the iCE nuisance classifier (paper: 512).
        ice_adversary: the network's nuisance term in iCE: ``"nce"`` (the paper's
            :math:`-L_{nCE}`) or ``"uniform"`` (the bounded confusion loss, see
            :class:`~preimage.losses.IndependenceCrossEntropy`). Measured at the ``cpu``
            budget (BENCHMARKS.md): ``"nce"`` gave 10.2% (affine couplings) and 26.0%
            (additive) logit test error against 1.1-1.5% for cross-entropy, and the label
            stayed readable from :math:`z_n`; ``"uniform"`` at weight 1 stopped the logits from
            learning at all (80-84% test error). ``bench/ice_ablation.py`` compares smaller
            weights and more inner steps.
        ice_nce_weight: weight of the nuisance term in the network's objective.
        ice_max_steps: nuisance-classifier steps per batch (paper: alternating, 1).

    Example:
        >>> IceStudyConfig().nuisance_hidden
        512
    """

    nuisance_hidden: int = 512
    ice_adversary: str = "nce"
    ice_nce_weight: float = 1.0
    ice_max_steps: int = 1


MNIST_SMOKE: dict[str, Any] = {
    "n_train": 384,
    "n_test": 256,
    "train_split": "test",
    "epochs": 1,
    "lr_step": 1,
    "blocks_per_stage": 1,
    "hidden": 8,
}
"""``smoke`` overrides of the :class:`MnistStudyConfig` fields shared by every MNIST study."""

MNIST_PAPER: dict[str, Any] = {
    "epochs": 100,
    "lr_step": 30,
    "blocks_per_stage": 16,
    "hidden": 128,
}
"""``paper`` overrides of the :class:`MnistStudyConfig` fields (appendix D.2)."""


def start_run(
    config: StudyConfig, name: str, argv: Sequence[str] | None, out_dir: str | os.PathLike[str]
) -> tuple[RunDir, torch.device]:
    """Open the run directory of study ``name``, write its config and resolve the device."""
    run = RunDir(out_dir)
    run.write_config(asdict(config), argv=argv, seed=config.seed, command=f"run {name}")
    return run, resolve_device(config.device)


def load_study_data(
    config: MnistStudyConfig,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The MNIST train and test subsets that ``config`` asks for (see :func:`load_mnist_subset`)."""
    return load_mnist_subset(
        config.data_dir,
        config.n_train,
        config.n_test,
        config.seed,
        train_split=config.train_split,
    )


def study_train_config(config: MnistStudyConfig, *, max_shift: int = 3) -> TrainConfig:
    """The paper's recipe with the length, decay step, seed and device of ``config``."""
    return train_config(
        config.epochs,
        seed=config.seed,
        device=config.device,
        lr_step=config.lr_step,
        max_shift=max_shift,
    )


def study_firevnet_options(config: MnistStudyConfig) -> dict[str, Any]:
    """FiRevNet options with the sizes of ``config``."""
    return firevnet_options(config.stages, config.blocks_per_stage, config.hidden)


def error_on(
    fn: Callable[[Tensor], Tensor], data: tuple[Tensor, Tensor], device: torch.device
) -> float:
    """Classification error of ``fn`` on ``(images, labels)`` moved to ``device``.

    Example:
        >>> import torch
        >>> x, y = torch.eye(3), torch.tensor([0, 1, 0])
        >>> round(error_on(lambda t: t, (x, y), torch.device("cpu")), 4)
        0.3333
    """
    return classification_error(fn, data[0].to(device), data[1].to(device))


@dataclass
class TrainedModel:
    """A trained (or reloaded) model with what the report needs about its training.

    Attributes:
        model: the network, in eval mode on the run's device.
        history: the trainer's per-epoch history (empty when reloaded without one).
        path: checkpoint file it was saved to or loaded from.
        reused: whether it was loaded from ``model_dir`` instead of trained.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    path: Path
    reused: bool


def subset(data: tuple[Tensor, Tensor], n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` samples drawn without replacement with ``seed`` (all of them for ``None``).

    Example:
        >>> import torch
        >>> x, y = subset((torch.arange(10.0).reshape(10, 1), torch.arange(10)), 4, seed=0)
        >>> x.shape, bool(torch.equal(x[:, 0].long(), y))
        (torch.Size([4, 1]), True)
    """
    x, y = data
    if n is None or n >= x.shape[0]:
        return x, y
    if n < 1:
        raise ConfigError(f"subset size must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=gen)[:n]
    return x[idx], y[idx]


def load_mnist_subset(
    data_dir: str | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    *,
    train_split: str = "train",
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """MNIST train and test images, optionally subsampled.

    With ``train_split="test"`` (smoke budgets) both come from disjoint random subsets of the
    10k test split, which skips reading the 60k training file; ``n_train`` and ``n_test`` must
    then be given.
    """
    if train_split == "test":
        if n_train is None or n_test is None or n_train + n_test > 10_000:
            raise ConfigError("train_split='test' needs n_train + n_test <= 10000")
        split = load_dataset("mnist", "test", data_dir=data_dir)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(split), generator=gen)
        tr, te = idx[:n_train], idx[n_train : n_train + n_test]
        return (split.images[tr], split.labels[tr]), (split.images[te], split.labels[te])
    if train_split != "train":
        raise ConfigError(f"train_split must be 'train' or 'test', got {train_split!r}")
    train = load_dataset("mnist", "train", data_dir=data_dir)
    test = load_dataset("mnist", "test", data_dir=data_dir)
    return (
        subset((train.images, train.labels), n_train, seed),
        subset((test.images, test.labels), n_test, seed + 1),
    )


def different_label_pairs(labels: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` index pairs ``(i, j)`` with ``labels[i] != labels[j]``, drawn with ``seed``.

    Example:
        >>> import torch
        >>> y = torch.tensor([0, 0, 1, 2])
        >>> i, j = different_label_pairs(y, 5, seed=0)
        >>> bool((y[i] != y[j]).all()), len(i)
        (True, 5)
    """
    gen = torch.Generator().manual_seed(seed)
    picked_i: list[Tensor] = []
    picked_j: list[Tensor] = []
    have = 0
    while have < n:
        i = torch.randint(0, labels.shape[0], (2 * n,), generator=gen)
        j = torch.randint(0, labels.shape[0], (2 * n,), generator=gen)
        keep = labels[i] != labels[j]
        picked_i.append(i[keep])
        picked_j.append(j[keep])
        have += int(keep.sum())
    return torch.cat(picked_i)[:n], torch.cat(picked_j)[:n]


def firevnet_options(stages: int, blocks_per_stage: int, hidden: int) -> dict[str, Any]:
    """FiRevNet options of the MNIST studies (appendix D.2 components; sizes per budget).

    Couplings are additive: appendix D.2 builds the network from "RevNet blocks", which are
    additive, and additive couplings invert to rounding error far from the data. With affine
    couplings (clamp 2) the ``cpu`` CE model's metamers F^-1(z_s(a), z_n(b)) left [0, 1] in 86%
    of their pixels and re-encoding them changed the logits by up to 1006: the inverse
    amplified rounding by up to e^2 per coupling on these off-distribution codes.
    """
    return {
        "stages": stages,
        "blocks_per_stage": blocks_per_stage,
        "hidden": hidden,
        "coupling": "additive",
    }


def train_config(
    epochs: int,
    *,
    seed: int,
    device: str,
    lr_step: int = 30,
    max_steps_per_epoch: int | None = None,
    max_shift: int = 3,
) -> TrainConfig:
    """The paper's MNIST recipe (appendix D.2) with the given length."""
    return TrainConfig(
        epochs=epochs,
        seed=seed,
        device=device,
        lr_step=lr_step,
        max_steps_per_epoch=max_steps_per_epoch,
        max_shift=max_shift,
    )


def _candidate(model_dir: str | os.PathLike[str], name: str) -> Path | None:
    base = Path(model_dir)
    for path in (base / "checkpoints" / f"{name}.safetensors", base / f"{name}.safetensors"):
        if path.is_file():
            return path
    return None


def _stored_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(read_checkpoint_metadata(path).get("state", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} holds no readable state") from None
    if not isinstance(state, dict) or "model_config" not in state:
        raise CheckpointError(f"checkpoint {path} does not record its model configuration")
    return state


def _load_firevnet(path: Path, device: torch.device) -> TrainedModel:
    state = _stored_state(path)
    cfg = dict(state["model_config"])
    model = FiRevNet(tuple(cfg.pop("in_shape")), cfg.pop("num_classes"), **cfg)
    loaded = load_checkpoint(path, model=model, expected_model_class="FiRevNet")
    history = loaded.get("history", [])
    return TrainedModel(model.to(device).eval(), list(history), path, True)


def obtain_firevnet(
    run: RunDir,
    name: str,
    objective: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None,
    *,
    model_options: Mapping[str, Any],
    config: TrainConfig,
    nuisance_hidden: int = 512,
    ice_adversary: str = "nce",
    ice_nce_weight: float = 1.0,
    ice_max_steps: int = 1,
    model_dir: str | None = None,
    progress: bool = False,
) -> TrainedModel:
    r"""A fi-RevNet trained with ``objective`` on ``train``, or reloaded from ``model_dir``.

    A fresh model is saved to ``run.checkpoints/<name>.safetensors`` with its architecture and
    training history in the checkpoint state. With ``model_dir`` (a previous run directory or
    its ``checkpoints`` folder) holding ``<name>.safetensors``, that model is loaded instead;
    its input shape and class count must match the data.

    Args:
        run: the run directory.
        name: checkpoint name, e.g. ``"ce"`` or ``"shift_ice"``.
        objective: ``"ce"`` or ``"ice"``.
        train: ``(images, labels)`` in :math:`[0, 1]`.
        test: evaluated after each epoch, or ``None``.
        model_options: :class:`~preimage.models.FiRevNet` options.
        config: training settings.
        nuisance_hidden: hidden units of the iCE nuisance classifier (paper: 512).
        ice_adversary: ``adversary`` of :class:`~preimage.losses.IndependenceCrossEntropy`.
        ice_nce_weight: its ``nce_weight``.
        ice_max_steps: its ``max_steps``.
        model_dir: where to look for a model to reuse.
        progress: draw progress bars.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    device = resolve_device(config.device)
    if model_dir is not None:
        found = _candidate(model_dir, name)
        if found is not None:
            reused = _load_firevnet(found, device)
            shape = tuple(train[0].shape[1:])
            model = reused.model
            if getattr(model, "in_shape", None) != shape:
                raise CheckpointError(
                    f"{found} holds a model for inputs {model.in_shape}, the data has {shape}"
                )
            return reused
    classes = int(train[1].max()) + 1
    torch.manual_seed(config.seed)
    model = build_model("fi-revnet", tuple(train[0].shape[1:]), classes, **model_options)
    loss_fn = None
    if objective == "ice":
        nuisance_dim = model.dim - classes  # type: ignore[operator]
        loss_fn = IndependenceCrossEntropy(
            model,
            classes,
            int(nuisance_dim),
            nuisance_hidden=nuisance_hidden,
            adversary=ice_adversary,
            nce_weight=ice_nce_weight,
            max_steps=ice_max_steps,
        )
    trainer = Trainer(model, train, test, config, loss_fn=loss_fn, progress=progress)
    trainer.fit()
    path = run.checkpoint_path(name)
    save_checkpoint(
        path,
        model=model,
        state={
            "objective": objective,
            "model_config": model.config,  # type: ignore[operator]
            "train": config.to_dict(),
            "history": trainer.history,
            "ice": (
                {
                    "nuisance_hidden": nuisance_hidden,
                    "adversary": ice_adversary,
                    "nce_weight": ice_nce_weight,
                    "max_steps": ice_max_steps,
                }
                if objective == "ice"
                else None
            ),
        },
    )
    return TrainedModel(model.eval(), trainer.history, path, False)


def study_firevnet(
    run: RunDir,
    config: MnistStudyConfig,
    name: str,
    objective: str,
    data: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]],
    train_settings: TrainConfig,
    *,
    model_dir: str | None,
    nuisance_hidden: int = 512,
    ice_adversary: str = "nce",
    ice_nce_weight: float = 1.0,
    ice_max_steps: int = 1,
) -> TrainedModel:
    """:func:`obtain_firevnet` with the network sizes and progress setting of ``config``."""
    train, test = data
    return obtain_firevnet(
        run,
        name,
        objective,
        train,
        test,
        model_options=study_firevnet_options(config),
        config=train_settings,
        nuisance_hidden=nuisance_hidden,
        ice_adversary=ice_adversary,
        ice_nce_weight=ice_nce_weight,
        ice_max_steps=ice_max_steps,
        model_dir=model_dir,
        progress=config.progress,
    )


def fallback_classifier(in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small ReLU MLP on raw pixels, used when no ``cnn`` baseline is registered.

    Example:
        >>> import torch
        >>> fallback_classifier((1, 28, 28), 10)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    d = 1
    for s in in_shape:
        d *= int(s)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


def obtain_plain_classifier(
    run: RunDir,
    name: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None,
    *,
    config: TrainConfig,
    model_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> tuple[nn.Module, str, list[dict[str, Any]]]:
    """Train the non-invertible baseline (``cnn`` when registered, else an MLP) with plain CE.

    Returns:
        ``(model, architecture name, history)``; the model is saved to
        ``run.checkpoints/<name>.safetensors``.
    """
    shape = tuple(train[0].shape[1:])
    classes = int(train[1].max()) + 1
    torch.manual_seed(config.seed)
    if "cnn" in MODELS:
        arch = "cnn"
        model = build_model("cnn", shape, classes, **dict(model_options or {}))
    else:
        arch = "mlp"
        model = fallback_classifier(shape, classes)
    trainer = Trainer(model, train, test, config, progress=progress)
    trainer.fit()
    save_checkpoint(
        run.checkpoint_path(name),
        model=model,
        state={"architecture": arch, "history": trainer.history},
    )
    return model.eval(), arch, trainer.history


@dataclass(frozen=True)
class Target:
    """A target of a study: the measured value, the goal in words and whether it was met.

    Example:
        >>> Target("ce_error", 0.01, "<= 0.05", True).row()["met"]
        'met'
    """

    name: str
    value: float
    goal: str
    met: bool

    def row(self) -> dict[str, Any]:
        """The target as a report-table row."""
        return {
            "target": self.name,
            "value": self.value,
            "goal": self.goal,
            "met": "met" if self.met else "missed",
        }


def target_metrics(targets: list[Target]) -> dict[str, bool]:
    """``target_<name>_met`` flags for the metrics dict.

    Example:
        >>> target_metrics([Target("a", 1.0, "> 0", True)])
        {'target_a_met': True}
    """
    return {f"target_{t.name}_met": bool(t.met) for t in targets}


def add_figure(report: Report, run: RunDir, fig: Figure, name: str, caption: str) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` and embed it in ``report``."""
    path = save_figure(fig, run.figure_path(name))
    report.add_figure(path, caption)
    return path


def finish_report(
    report: Report,
    run: RunDir,
    title: str,
    metrics: Mapping[str, Any],
    targets: list[Target],
    config: Mapping[str, Any],
) -> None:
    """Add targets, metrics and config to ``report``, write it, print the summary."""
    report.add_heading("Targets")
    report.add_table([t.row() for t in targets], title="Targets of the study")
    report.add_heading("Metrics")
    report.add_metrics(metrics)
    report.add_heading("Configuration")
    report.add_config(config)
    report.write(run.report_path)
    print(title)
    for t in targets:
        print(f"  {t.name:40s} {t.value:12.6g}  goal {t.goal:14s} {'met' if t.met else 'MISSED'}")


def objective_models(
    run: RunDir,
    config: IceStudyConfig,
    data: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]],
    train_settings: TrainConfig,
    *,
    model_dir: str | None,
    prefix: str = "",
) -> Iterator[tuple[str, TrainedModel]]:
    """``(objective, model)`` for each of :data:`OBJECTIVES`, saved as ``prefix + objective``.

    Each model is trained (or reloaded) only when the iteration reaches it, so a study that
    evaluates one objective before the next keeps that order.
    """
    for objective in OBJECTIVES:
        yield (
            objective,
            study_firevnet(
                run,
                config,
                f"{prefix}{objective}",
                objective,
                data,
                train_settings,
                model_dir=model_dir,
                nuisance_hidden=config.nuisance_hidden,
                ice_adversary=config.ice_adversary,
                ice_nce_weight=config.ice_nce_weight,
                ice_max_steps=config.ice_max_steps,
            ),
        )
