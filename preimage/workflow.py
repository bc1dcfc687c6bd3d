r"""Train and evaluate a model into a run directory: the library side of ``preimage train/eval``.

A run directory holds ``config.json`` (resolved configuration, argv, versions, seed),
``metrics.json``, ``checkpoints/last.safetensors``, ``figures/*.png`` and a self-contained
``report.html`` (DESIGN.md, "Run directory").

Example:
    >>> import tempfile
    >>> from preimage.train import TrainConfig
    >>> out = tempfile.mkdtemp()
    >>> metrics = train_run(
    ...     out, dataset="digits", train=TrainConfig(epochs=1, max_steps_per_epoch=2),
    ...     model_options={"stages": 2, "blocks_per_stage": 1, "hidden": 8}, progress=False,
    ... )
    >>> sorted(k for k in metrics if k in ("epochs_completed", "max_inverse_error"))
    ['epochs_completed', 'max_inverse_error']

References:
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, section 2.1
    (metameric sampling, shown in every report of an invertible classifier) and appendix D.2
    (the training recipe, :class:`preimage.train.TrainConfig`'s defaults).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from preimage.attacks.metamer import metamer_grid
from preimage.data import DatasetSplit, load_dataset
from preimage.errors import CheckpointError, ConfigError, DataError
from preimage.models import build_model
from preimage.nn.base import InvertibleModule
from preimage.nn.classifier import BijectiveClassifier
from preimage.presets import DATASET_PRESETS
from preimage.report import Report, plots
from preimage.runs import RunDir
from preimage.train import TrainConfig, Trainer, load_checkpoint, resolve_device
from preimage.train.distributed import is_main_process
from preimage.train.loop import CHECKPOINT_FILE

__all__ = [
    "CHECKPOINT_NAME",
    "DATASET_PRESETS",
    "RESUMABLE",
    "evaluate_run",
    "inverse_error",
    "load_run_model",
    "train_run",
    "write_train_report",
]

CHECKPOINT_NAME = CHECKPOINT_FILE

RESUMABLE: tuple[str, ...] = ("epochs", "device")
"""The settings ``--resume`` may change; every other one belongs to the stored run."""


def _model_options(model: str, dataset: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    # The presets size a fi-RevNet; other models bring their own defaults.
    preset = DATASET_PRESETS.get(dataset, {}).get("model", {}) if model == "fi-revnet" else {}
    return {**preset, **(options or {})}


def _checkpoint_path(run: RunDir) -> Path:
    return run.checkpoints / CHECKPOINT_NAME


@torch.no_grad()
def inverse_error(model: nn.Module, images: Tensor, *, batch_size: int = 500) -> float:
    r"""Largest :math:`\max |x - F^{-1}(F(x))|` over ``images`` (eval mode, batched)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    worst = 0.0
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            z, _ = model(x)
            worst = max(worst, float((model.inverse(z) - x).abs().max()))
    finally:
        model.train(was_training)
    return worst


def train_run(
    out_dir: str | os.PathLike[str],
    *,
    model: str = "fi-revnet",
    dataset: str = "mnist",
    model_options: Mapping[str, Any] | None = None,
    train: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    argv: Sequence[str] | None = None,
    progress: bool = True,
    title: str | None = None,
    extra_config: Mapping[str, Any] | None = None,
    download: bool = False,
    resume_overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` and write the full run directory; return the metrics.

    With ``resume=True`` the configuration stored in ``out_dir/config.json`` is used and
    training continues after the last completed epoch; only ``epochs`` and ``device`` may be
    given (through ``resume_overrides``), anything else is refused with the names of the
    conflicting settings. Each resume is appended to ``config.json``'s ``history``; the original
    ``argv`` and ``created`` stay. Without ``resume``, a folder that already holds a run (of any
    kind) is refused unless ``overwrite`` replaces it.
    """
    # Only the main process claims the folder: the other ranks would see its fresh config.json.
    if is_main_process():
        run = RunDir.open(out_dir, kind="train", resume=resume, overwrite=overwrite)
    else:
        run = RunDir(out_dir)
    changed = {k: v for k, v in (resume_overrides or {}).items() if v is not None}
    ckpt = _checkpoint_path(run)
    if resume:
        if not ckpt.is_file() or not run.config_path.is_file():
            raise CheckpointError(f"nothing to resume in {run.path}: no config.json or {ckpt.name}")
        stored = run.read_config()["config"]
        model, dataset = stored["model"], stored["dataset"]
        model_options = stored["model_options"]
        refused = sorted(set(changed) - set(RESUMABLE))
        if refused:
            raise ConfigError(
                f"--resume continues the stored run; it cannot change {', '.join(refused)} "
                f"(only {', '.join(RESUMABLE)} may be given)"
            )
        train = replace(TrainConfig.from_dict(stored["train"]), **changed)
        data_dir = data_dir if data_dir is not None else stored.get("data_dir")
    if train is None:
        preset = DATASET_PRESETS.get(dataset, {}).get("train", {})
        train = TrainConfig(**preset)
    options = _model_options(model, dataset, model_options)

    train_split = load_dataset(
        dataset, "train", data_dir=data_dir, seed=train.seed, download=download
    )
    test_split = load_dataset(dataset, "test", data_dir=data_dir, seed=train.seed)
    torch.manual_seed(train.seed)
    net = build_model(model, train_split.sample_shape, train_split.num_classes, **options)
    config = {
        "command": "train",
        "model": model,
        "dataset": dataset,
        "model_options": options,
        "model_config": getattr(net, "config", None),
        "train": train.to_dict(),
        "data_dir": None if data_dir is None else str(data_dir),
        "resume": resume,
        **(extra_config or {}),
    }
    main = is_main_process()
    if main and resume:
        run.record_resume(argv, changed)
    elif main:
        run.write_config(config, argv=argv, seed=train.seed, command="train")
    trainer = Trainer(
        net,
        (train_split.images, train_split.labels),
        (test_split.images, test_split.labels),
        train,
        out_dir=run,
        progress=progress,
        model_class=type(net).__name__,
    )
    final = trainer.fit(resume=resume)
    metrics: dict[str, Any] = {
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "train_accuracy": final.get("train_accuracy"),
        "train_loss": final.get("train_loss"),
        "epochs_completed": len(trainer.history),
        "history": trainer.history,
    }
    if isinstance(net, InvertibleModule):
        metrics["max_inverse_error"] = inverse_error(net, test_split.images)
    if main:
        run.write_metrics(metrics)
        write_train_report(run, net, test_split, metrics, config, title=title)
    return metrics


def load_run_model(
    run_dir: str | os.PathLike[str], *, device: str = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a run directory from its ``config.json`` and last checkpoint."""
    run = RunDir(run_dir)
    config_path = run.path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run.path} is not a preimage run directory (no config.json)")
    try:
        config = run.read_config()["config"]
        model_name, options = config["model"], config["model_options"]
    except (KeyError, TypeError, DataError) as err:
        raise CheckpointError(f"{config_path} is not a preimage training config ({err})") from err
    dataset = config.get("dataset", "mnist")
    shape, classes = _dataset_shape(dataset, config)
    net = build_model(model_name, shape, classes, **options)
    ckpt = _checkpoint_path(run)
    if not ckpt.is_file():
        raise CheckpointError(f"no checkpoint at {ckpt}")
    load_checkpoint(ckpt, model=net, expected_model_class=type(net).__name__)
    return net.to(resolve_device(device)).eval(), config


def _dataset_shape(dataset: str, config: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    stored = config.get("model_config") or {}
    if "in_shape" in stored and "num_classes" in stored:
        return tuple(stored["in_shape"]), int(stored["num_classes"])
    split = load_dataset(dataset, "test", data_dir=config.get("data_dir"))
    return split.sample_shape, split.num_classes


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Test accuracy, loss and max inverse error of a run directory's last checkpoint."""
    net, config = load_run_model(run_dir, device=device)
    data_dir = data_dir if data_dir is not None else config.get("data_dir")
    seed = int(config.get("train", {}).get("seed", 0))
    test = load_dataset(config["dataset"], "test", data_dir=data_dir, seed=seed)
    train_cfg = TrainConfig.from_dict(config["train"])
    trainer = Trainer(
        net,
        (test.images[:1], test.labels[:1]),
        None,
        replace(train_cfg, device=device),
        progress=False,
    )
    result = trainer.evaluate(test.images, test.labels)
    out: dict[str, Any] = {
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "num_test": len(test),
    }
    if isinstance(net, InvertibleModule):
        out["max_inverse_error"] = inverse_error(net, test.images)
    return out


def write_train_report(
    run: RunDir,
    net: nn.Module,
    test: DatasetSplit,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    title: str | None = None,
) -> Path:
    """Figures (curves, reconstructions, metamers) and ``report.html`` for a training run."""
    report = Report(title or f"preimage train: {config['model']} on {config['dataset']}")
    summary = (
        f"Model {config['model']} trained on {config['dataset']} for "
        f"{metrics['epochs_completed']} epochs. Test accuracy "
        f"{_pct(metrics.get('test_accuracy'))}."
    )
    if metrics.get("max_inverse_error") is not None:
        summary += (
            f" Largest reconstruction error over all {len(test)} test images: "
            f"max|x - F^-1(F(x))| = {metrics['max_inverse_error']:.3g}."
        )
    report.add_text(summary)
    report.add_metrics({k: v for k, v in metrics.items() if k != "history"})
    history = metrics.get("history") or []
    if history:
        fig = plots.training_curves(history)
        path = plots.save_figure(fig, run.figures / "training_curves.png")
        report.add_figure(path, "Loss and accuracy per epoch (train and test).")
    images = test.images
    if images.dim() == 4 and isinstance(net, InvertibleModule):
        device = next(net.parameters()).device
        net.eval()
        x = _one_per_class(test, 10).to(device)
        with torch.no_grad():
            z, _ = net(x)
            x_rec = net.inverse(z)
        fig = plots.reconstruction_figure(x.cpu(), x_rec.cpu(), n=len(x))
        path = plots.save_figure(fig, run.figures / "reconstructions.png")
        report.add_figure(
            path,
            f"{len(x)} test inputs (one per class where possible), their reconstructions "
            f"F^-1(F(x)) and |difference|; the title's max |x - x_rec| is over these {len(x)} "
            "images only (the summary above gives it over the whole test set).",
        )
        if isinstance(net, BijectiveClassifier):
            k = min(len(x), 6)
            sem, nui = x[:k], (x[k : 2 * k] if len(x) >= 2 * k else x[:k].flip(0))
            met = metamer_grid(net, sem, nui)
            with torch.no_grad():
                pred = net.logits(met.reshape(-1, *met.shape[2:])).argmax(1)
            outside = float(((met < 0) | (met > 1)).float().mean())
            fig = plots.metamer_grid(
                sem.cpu(),
                nui.cpu(),
                met.clamp(0.0, 1.0).cpu(),
                predicted=pred.reshape(met.shape[0], met.shape[1]).cpu(),
            )
            path = plots.save_figure(fig, run.figures / "metamers.png")
            report.add_figure(
                path,
                "Metameric samples x* = F^-1(z_s(a), z_n(b)): row = logits source a, column = "
                "nuisance source b; the corner number is the model's prediction, which is the "
                "row's class since every cell has exactly the logits of its row. Display clamped "
                f"to [0, 1]: {100 * outside:.1f}% of the metamers' pixels lie outside it (values "
                f"span {float(met.min()):.3g} to {float(met.max()):.3g}), so a cell shows what "
                "the model ignores only where it is not clamped.",
            )
    report.add_config(config)
    return report.write(run.path / "report.html")


def _one_per_class(split: DatasetSplit, n: int) -> Tensor:
    picks: list[int] = []
    for c in range(split.num_classes):
        hits = (split.labels == c).nonzero().flatten()
        if len(hits):
            picks.append(int(hits[0]))
    for i in range(len(split.labels)):
        if len(picks) >= n:
            break
        if i not in picks:
            picks.append(i)
    return split.images[torch.tensor(picks[:n])]


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.2f}%"
