r"""fi-RevNets trained with cross-entropy (CE) or the independence cross-entropy (iCE), for studies.

The MNIST excessive-invariance studies (``metamers-mnist``, ``nuisance-info``,
``shiftmnist-*``, ``feature-adversaries``) train the same fully invertible RevNet with the
paper's recipe (:class:`~preimage.train.TrainConfig`'s defaults: Adamax, lr :math:`10^{-3}`,
decay 0.2 every ``lr_step`` epochs, batch 64, l2 :math:`10^{-4}`, shifts of 3 pixels,
dequantisation) with either objective, and compare it with a non-invertible ``cnn`` trained with
plain cross-entropy. This module holds what they share:

* :class:`MnistStudyConfig` / :class:`IceStudyConfig`: the nested ``train``, ``model`` and
  ``ice`` configs with the budgets of these studies;
* :func:`obtain_firevnet`: train a fi-RevNet with ``"ce"`` or ``"ice"`` (the loss built from
  :class:`~preimage.losses.IceConfig`), or reload it from an earlier run's checkpoint
  (``-o model_dir=PATH``); :func:`objective_models` iterates over both objectives;
* :func:`obtain_plain_classifier`: the ``cnn`` baseline (oracle, CE ResNet of figure 8);
* :func:`different_label_pairs`: image pairs of different classes (metamer sources).

Deviation from the paper, and why: the ``cpu`` budgets use a CPU-sized network and few epochs,
sized to 45 minutes on 2 cores (throughput figures in BENCHMARKS.md): the studies that train
both objectives (:class:`IceStudyConfig`) use 3 stages of 4 additive blocks with 64 filters, the
others 3 stages of 2 blocks with 32 filters, instead of 16 blocks with 128 filters. The iCE
studies need the larger network: in the issue-11 ablation (BENCHMARKS.md) no setting of the
game lifted the post-hoc nuisance error of 2 blocks of 32 filters above a few per cent, while 4
blocks of 64 filters, trained for as many steps as the ``cpu`` budget takes, removed much of
the label from :math:`z_n`. The ``paper`` budgets use the
architecture and schedule of appendix D.2. Couplings are additive because appendix D.2 builds
the network from "RevNet blocks", which are additive, and additive couplings invert to rounding
error far from the data, where metamers live (BENCHMARKS.md, ``metamers-mnist``, shows what
affine couplings did there).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 3 (iCE), section 4 and appendix D.2.

Example:
    >>> cfg = IceStudyConfig.for_budget("smoke")
    >>> cfg.train_split, cfg.model.coupling, cfg.train.epochs, cfg.ice.nuisance_hidden
    ('test', 'additive', 1, 32)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import Tensor, nn

from preimage.analysis.ice_game import IceGameMonitor
from preimage.analysis.invariance import classification_error
from preimage.data import embed_image, load_train_test, subset
from preimage.errors import CheckpointError, ConfigError
from preimage.losses import IceConfig, IndependenceCrossEntropy
from preimage.losses.ice import IceWarmup
from preimage.models import FiRevNet, FiRevNetConfig, build_model
from preimage.presets import model_preset
from preimage.report import plots
from preimage.runs import RunDir
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun
from preimage.train import (
    Callback,
    TrainConfig,
    Trainer,
    load_checkpoint,
    read_checkpoint_metadata,
    resolve_device,
    save_checkpoint,
)

__all__ = [
    "BASELINE",
    "ICE_PAPER",
    "MNIST_PAPER",
    "MNIST_SMOKE",
    "OBJECTIVES",
    "IceStudyConfig",
    "MnistStudyConfig",
    "RecipeConfig",
    "TrainedModel",
    "check_recipe",
    "different_label_pairs",
    "error_on",
    "game_data",
    "game_report",
    "load_mnist",
    "model_inputs",
    "objective_models",
    "obtain_firevnet",
    "obtain_plain_classifier",
    "study_recipe",
    "training_figure",
]

OBJECTIVES: tuple[str, ...] = ("ce", "ice")
"""Training objectives: cross-entropy and independence cross-entropy."""

BASELINE = "cnn"
"""The registered non-invertible classifier used as oracle and as the CE ResNet baseline."""

Pair = tuple[Tensor, Tensor]


def _mnist_model() -> FiRevNetConfig:
    return model_preset("mnist", coupling="additive")


def _ice_model() -> FiRevNetConfig:
    return model_preset("mnist", coupling="additive", blocks_per_stage=4, hidden=64)


@dataclass(frozen=True)
class MnistStudyConfig(StudyConfig):
    """Fields shared by the MNIST invariance studies (defaults: the ``cpu`` budget).

    ``train.seed`` and ``train.device`` follow the study's ``seed`` and ``device``
    (:func:`study_recipe`); set those instead.

    Attributes:
        n_train: MNIST training images (``None``: all 60k).
        n_test: MNIST test images (``None``: all 10k).
        train_split: ``"train"``; the smoke budget trains on part of the test split (see
            :func:`~preimage.data.load_train_test`).
        train: the fi-RevNet's training recipe (paper: 100 epochs, decay every 30).
        model: the fi-RevNet (paper: 3 stages of 16 blocks, 128 filters).
        model_dir: a previous run directory whose checkpoints to reuse.
        embed: feed the fi-RevNets MNIST embedded as 3x32x32 (centred zero padding, two empty
            channels: :func:`~preimage.data.embed_image`, as in the authors' public code), which
            gives a 48x4x4 top map with a centre position for ``model.readout="center"``.

    Example:
        >>> MnistStudyConfig.for_budget("paper").model.blocks_per_stage
        16
    """

    n_train: int | None = None
    n_test: int | None = None
    train_split: Literal["train", "test"] = "train"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr_step=4))
    model: FiRevNetConfig = field(default_factory=_mnist_model)
    model_dir: str | None = None
    embed: bool = False

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "n_train": 384,
            "n_test": 256,
            "train_split": "test",
            "train.epochs": 1,
            "train.lr_step": 1,
            "model.blocks_per_stage": 1,
            "model.hidden": 8,
        },
        "cpu": {},
        "paper": {
            "train.epochs": 100,
            "train.lr_step": 30,
            "model.blocks_per_stage": 16,
            "model.hidden": 128,
        },
    }


MNIST_SMOKE: dict[str, Any] = dict(MnistStudyConfig.BUDGETS["smoke"])
"""``smoke`` overrides shared by every MNIST study."""
MNIST_PAPER: dict[str, Any] = dict(MnistStudyConfig.BUDGETS["paper"])
"""``paper`` overrides shared by every MNIST study (appendix D.2)."""


@dataclass(frozen=True)
class IceStudyConfig(MnistStudyConfig):
    """:class:`MnistStudyConfig` of the studies that train fi-RevNets with CE and with iCE.

    Attributes:
        model: the fi-RevNet (``cpu``: 3 stages of 4 additive blocks with 64 filters, twice the
            blocks and filters of the other MNIST studies; paper: 16 blocks, 128 filters).
        ice: the iCE loss (:class:`~preimage.losses.IndependenceCrossEntropy`'s arguments;
            paper: a 512-unit, 3-layer nuisance classifier, -L_nCE at weight 1, alternating
            single steps).
        game_n_train: training images of the per-epoch fresh probe of an iCE run
            (:class:`~preimage.analysis.ice_game.IceGameMonitor`).
        game_n_test: test images both the in-loop adversary and the fresh probe are scored on.
        game_probe_epochs: epochs of the per-epoch fresh probe (0: no monitoring).
    """

    model: FiRevNetConfig = field(default_factory=_ice_model)
    ice: IceConfig = field(default_factory=IceConfig)
    game_n_train: int = 5_000
    game_n_test: int = 2_000
    game_probe_epochs: int = 2

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **MNIST_SMOKE,
            "ice.nuisance_hidden": 32,
            # One smoke epoch: a warm-up would leave no epoch with the iCE terms to test.
            "ice.warmup_epochs": 0,
            "game_n_train": 128,
            "game_n_test": 128,
            "game_probe_epochs": 1,
        },
        "cpu": {},
        "paper": {**MNIST_PAPER, "ice.adversary_input": "raw", "ice.warmup_epochs": 0},
    }


ICE_PAPER: dict[str, Any] = dict(IceStudyConfig.BUDGETS["paper"])
"""``paper`` overrides of the CE/iCE studies: appendix D.2's network and schedule and the paper's
game (the adversary reads raw z_n, no warm-up)."""


def load_mnist(config: MnistStudyConfig, *, embed: bool | None = None) -> tuple[Pair, Pair]:
    """The MNIST train and test subsets of ``config`` (:func:`~preimage.data.load_train_test`:
    the train draw uses ``seed``, the test draw ``seed + 1``; ``train_split="test"`` draws
    both from one permutation of the test split), embedded as 3x32x32 when ``embed`` (default:
    ``config.embed``)."""
    train, test = load_train_test(
        "mnist",
        n_train=config.n_train,
        n_test=config.n_test,
        seed=config.seed,
        data_dir=config.data_dir,
        train_split=config.train_split,
    )
    if config.embed if embed is None else embed:
        return model_inputs(train), model_inputs(test)
    return train, test


def model_inputs(data: Pair) -> Pair:
    """``(images, labels)`` with MNIST-shaped images embedded as 3x32x32 (``embed``)."""
    return embed_image(data[0], size=32, channels=3), data[1]


class RecipeConfig(Protocol):
    """A study config with a ``train`` recipe that follows its ``seed`` and ``device``."""

    @property
    def seed(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def train(self) -> TrainConfig: ...


def check_recipe(config: RecipeConfig) -> None:
    """Refuse ``train.seed`` / ``train.device`` before the run directory opens: the ``check``
    of :func:`~preimage.studies.kit.study_entry` for the studies that train with
    :func:`study_recipe` of ``config.train``.

    Raises:
        ConfigError: as :func:`study_recipe`.

    Example:
        >>> check_recipe(MnistStudyConfig())
        >>> check_recipe(replace(MnistStudyConfig(), train=TrainConfig(device="cpu")))
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: train.device follows the study's device; ...
    """
    study_recipe(config, config.train)


def study_recipe(config: RecipeConfig, train: TrainConfig, *, seed_offset: int = 0) -> TrainConfig:
    """``train`` with the study's seed (plus ``seed_offset``) and device.

    Raises:
        ConfigError: ``train.seed`` or ``train.device`` was set; the study's ``seed`` and
            ``device`` drive every model it trains.

    Example:
        >>> cfg = MnistStudyConfig(seed=3)
        >>> study_recipe(cfg, cfg.train, seed_offset=1).seed
        4
    """
    default = TrainConfig()
    for name in ("seed", "device"):
        if getattr(train, name) != getattr(default, name):
            raise ConfigError(f"train.{name} follows the study's {name}; set -o {name}=... instead")
    return replace(train, seed=config.seed + seed_offset, device=config.device)


def error_on(fn: Callable[[Tensor], Tensor], data: Pair, device: torch.device) -> float:
    """Classification error of ``fn`` on ``(images, labels)`` moved to ``device``.

    Example:
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
        loss: the trained :class:`~preimage.losses.IndependenceCrossEntropy` (nuisance
            classifier and prior) of a freshly trained iCE model, else ``None``.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    path: Path
    reused: bool
    loss: IndependenceCrossEntropy | None = None


def different_label_pairs(labels: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` index pairs ``(i, j)`` with ``labels[i] != labels[j]``, drawn with ``seed``.

    Example:
        >>> y = torch.tensor([0, 0, 1, 2])
        >>> i, j = different_label_pairs(y, 5, seed=0)
        >>> bool((y[i] != y[j]).all()), len(i)
        (True, 5)
    """
    if int(labels.unique().numel()) < 2:
        raise ConfigError("different_label_pairs needs at least two classes")
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


def _candidate(model_dir: str | os.PathLike[str], name: str) -> Path | None:
    base = Path(model_dir)
    for path in (base / "checkpoints" / f"{name}.safetensors", base / f"{name}.safetensors"):
        if path.is_file():
            return path
    return None


def _reload(
    path: Path, objective: str, shape: tuple[int, ...], device: torch.device
) -> TrainedModel:
    try:
        state = json.loads(read_checkpoint_metadata(path).get("state", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} holds no readable state") from None
    if not isinstance(state, dict) or "model_config" not in state:
        raise CheckpointError(f"checkpoint {path} does not record its model configuration")
    if state.get("objective", objective) != objective:
        raise CheckpointError(f"{path} was trained with {state['objective']!r}, not {objective!r}")
    cfg = dict(state["model_config"])
    model = FiRevNet(tuple(cfg.pop("in_shape")), cfg.pop("num_classes"), **cfg)
    if model.in_shape != shape:
        raise CheckpointError(
            f"{path} holds a model for inputs {model.in_shape}, the data has {shape}"
        )
    loaded = load_checkpoint(path, model=model, expected_model_class="FiRevNet")
    return TrainedModel(model.to(device).eval(), list(loaded.get("history", [])), path, True)


def obtain_firevnet(
    run: RunDir | StudyRun,
    name: str,
    objective: str,
    train: Pair,
    test: Pair | None,
    *,
    model: FiRevNetConfig,
    recipe: TrainConfig,
    ice: IceConfig | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    game: tuple[Pair, Pair, int] | None = None,
) -> TrainedModel:
    r"""A fi-RevNet trained with ``objective`` on ``train``, or reloaded from ``model_dir``.

    A fresh model is initialised with ``torch.manual_seed(recipe.seed)``, so CE and iCE models
    of one run start from the same weights and see the same batches, and is saved to
    ``checkpoints/<name>.safetensors`` with its architecture, objective, iCE settings and
    training history. With ``model_dir`` (a previous run directory or its ``checkpoints``
    folder) holding ``<name>.safetensors``, that model is loaded instead; its objective and
    input shape must match.

    Args:
        run: the run directory (or the study's run).
        name: checkpoint name, e.g. ``"ce"`` or ``"shift_binary_ice"``.
        objective: ``"ce"`` or ``"ice"``.
        train: ``(images, labels)`` in :math:`[0, 1]`.
        test: evaluated after each epoch, or ``None``.
        model: the fi-RevNet's config.
        recipe: training settings.
        ice: the iCE loss's settings (default :class:`~preimage.losses.IceConfig`).
        model_dir: where to look for a model to reuse.
        progress: draw progress bars.
        game: ``(probe_train, probe_test, probe_epochs)``: watch an iCE run's game after
            every epoch (:class:`~preimage.analysis.ice_game.IceGameMonitor`; its errors land
            in the history as ``game_adversary_error`` and ``game_probe_error``).

    Raises:
        ConfigError: an unknown objective.
        CheckpointError: a reused checkpoint of another objective or input shape.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    ice = IceConfig() if ice is None else ice
    shape = tuple(int(s) for s in train[0].shape[1:])
    found = None if model_dir is None else _candidate(model_dir, name)
    if found is not None:
        return _reload(found, objective, shape, resolve_device(recipe.device))
    classes = int(train[1].max()) + 1
    torch.manual_seed(recipe.seed)
    net = FiRevNet(shape, classes, **asdict(model))
    loss = None
    callbacks: list[Callback] = []
    if objective == "ice":
        loss = IndependenceCrossEntropy.from_config(net, classes, net.dim - classes, ice)
        if ice.warmup_epochs > 0:
            callbacks.append(IceWarmup(loss, ice.warmup_epochs))
        if game is not None and game[2] > 0:
            callbacks.append(
                IceGameMonitor(
                    loss, game[0], game[1], epochs=game[2], hidden=ice.nuisance_hidden,
                    seed=recipe.seed,
                )
            )  # fmt: skip
    trainer = Trainer(
        net, train, test, recipe, loss_fn=loss, progress=progress, callbacks=callbacks
    )
    trainer.fit()
    path = run.checkpoint_path(name)
    state = {
        "objective": objective,
        "model_config": net.config,
        "train": recipe.to_dict(),
        "history": trainer.history,
        "ice": asdict(ice) if objective == "ice" else None,
    }
    save_checkpoint(path, model=net, state=state)
    return TrainedModel(net.eval(), trainer.history, path, False, loss)


def game_data(
    config: IceStudyConfig, train: Pair, test: Pair | None
) -> tuple[Pair, Pair, int] | None:
    """The ``game`` argument of :func:`obtain_firevnet` for ``config``: ``game_n_train``
    training and ``game_n_test`` test images (training images when there is no test set) and
    ``game_probe_epochs``; ``None`` when monitoring is off."""
    if config.game_probe_epochs <= 0:
        return None
    return (
        subset(train, config.game_n_train, config.seed + 3),
        subset(test if test is not None else train, config.game_n_test, config.seed + 4),
        config.game_probe_epochs,
    )


def objective_models(
    run: StudyRun,
    config: IceStudyConfig,
    data: tuple[Pair, Pair],
    recipe: TrainConfig,
    *,
    prefix: str = "",
) -> Iterator[tuple[str, TrainedModel]]:
    """``(objective, model)`` for each of :data:`OBJECTIVES`, saved as ``prefix + objective``.

    Each model is trained (or reloaded from ``config.model_dir``) only when the iteration
    reaches it, so a study that evaluates one objective before the next keeps that order. The
    iCE run is watched on ``config.game_n_train`` / ``game_n_test`` images of the training /
    test data (see :func:`obtain_firevnet`).
    """
    game = game_data(config, *data)
    for objective in OBJECTIVES:
        yield (
            objective,
            obtain_firevnet(
                run,
                f"{prefix}{objective}",
                objective,
                *data,
                model=config.model,
                recipe=recipe,
                ice=config.ice,
                model_dir=config.model_dir,
                progress=config.progress,
                game=game,
            ),
        )


def obtain_plain_classifier(
    run: RunDir | StudyRun,
    name: str,
    train: Pair,
    test: Pair | None,
    *,
    recipe: TrainConfig,
    width: int,
    progress: bool = False,
) -> TrainedModel:
    """The non-invertible :data:`BASELINE` (``cnn`` of ``width``) trained with plain CE.

    The model is initialised with ``torch.manual_seed(recipe.seed)`` and saved to
    ``checkpoints/<name>.safetensors``.
    """
    torch.manual_seed(recipe.seed)
    model = build_model(BASELINE, tuple(train[0].shape[1:]), int(train[1].max()) + 1, width=width)
    trainer = Trainer(model, train, test, recipe, progress=progress)
    trainer.fit()
    path = run.checkpoint_path(name)
    save_checkpoint(path, model=model, state={"architecture": BASELINE, "history": trainer.history})
    return TrainedModel(model.eval(), trainer.history, path, False)


def training_figure(study: StudyRun, name: str, label: str, history: list[dict[str, Any]]) -> None:
    """``figures/training_<name>.png``: the training curves of ``history`` (none when empty, as
    for a reused checkpoint that carries no history), then the iCE game of :func:`game_report`
    when the history holds one."""
    game_report(study, name, label, history)
    if history:
        study.figure(
            plots.training_curves(history),
            f"training_{name}",
            f"{label} training: loss and accuracy per epoch (and the learning rate where it "
            "changes).",
        )


def game_report(study: StudyRun, name: str, label: str, history: list[dict[str, Any]]) -> None:
    """The iCE game per epoch (from an :class:`~preimage.analysis.ice_game.IceGameMonitor`
    history): ``figures/game_<name>.png`` with the in-loop adversary's and the fresh probe's
    errors on z_n next to the logit test error, and a table that adds the MLE term. Nothing
    when the history holds no game records (a reused checkpoint, or monitoring off)."""
    rows = [h for h in history if "game_probe_error" in h]
    if not rows:
        return
    epochs = [int(h["epoch"]) for h in rows]
    series = {
        "in-loop adversary on z_n": [100 * h["game_adversary_error"] for h in rows],
        "fresh probe on z_n": [100 * h["game_probe_error"] for h in rows],
        "logits (test)": [100 * (1 - h.get("test_accuracy", float("nan"))) for h in rows],
    }
    study.figure(
        plots.line_plot(
            epochs, series, xlabel="epoch", ylabel="test error %",
            title=f"{label}: is the adversary beaten or fooled?",
        ),
        f"game_{name}",
        f"{label}, per epoch: error of the in-loop nuisance classifier and of a fresh probe "
        "trained on the current z_n (a gap = an adversary that is being fooled, not label "
        "information removed), and the logit test error.",
    )  # fmt: skip
    study.table(
        [
            {
                "epoch": e,
                **{f"{k} error %": v[i] for k, v in series.items()},
                "MLE term (nats/dim, train)": h.get("train_mle", float("nan")),
            }
            for i, (e, h) in enumerate(zip(epochs, rows, strict=True))
        ],
        title=f"{label}: the game per epoch",
    )
