r"""A model-agnostic, resumable, optionally distributed training loop.

:class:`Trainer` runs the paper's recipe (see :class:`~preimage.train.config.TrainConfig`) on
any :class:`torch.nn.Module` and in-memory tensors ``(images, labels)``. The objective is a
plug-in ``loss_fn(model, x, y) -> (loss, metrics)``; the default is the cross-entropy of
``model.logits(x)`` when the model has a ``logits`` method (invertible classifiers, whose
``forward`` returns ``(z, logdet)``), else of ``model(x)``.

Every random choice of epoch :math:`e` (0-based) is a function of ``(seed, e, rank)`` alone:
the shuffling permutation (:func:`epoch_permutation`), the augmentation noise and the global
torch RNG used inside the epoch (dropout, stochastic losses), which is seeded afresh for each
epoch inside :func:`torch.random.fork_rng` and restored afterwards. With the model, optimiser
and scheduler state checkpointed at the end of every epoch, a run stopped at any point and
resumed from its last checkpoint therefore retraces the uninterrupted run exactly (bit for bit
on the CPU).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.2 (the MNIST recipe: Adamax, step decay, random shifts,
    dequantisation) and section 3 / Definition 5 (the independence cross-entropy, an objective
    the ``loss_fn`` hook is there to accept).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from preimage.errors import CheckpointError, ConfigError, DataError, ShapeError, TrainingError
from preimage.nn.classifier import logits_of
from preimage.runs import RunDir
from preimage.train.augment import dequantize, random_shift
from preimage.train.checkpoint import (
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from preimage.train.config import TrainConfig, resolve_device
from preimage.train.distributed import DistributedContext, init_distributed

CHECKPOINT_FILE = "last.safetensors"
"""The trainer's checkpoint in ``checkpoints/``, rewritten after every epoch."""

__all__ = [
    "Callback",
    "LossFn",
    "Trainer",
    "cosine_factor",
    "cross_entropy_loss",
    "derive_seed",
    "epoch_permutation",
]

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, dict[str, float]]]
"""``loss_fn(model, x, y) -> (loss, metrics)``: scalar loss to minimise and floats to log."""

# Fields a resumed run may change without leaving the trajectory of the original run.
_RESUME_FREE_FIELDS = frozenset({"epochs", "device", "eval_batch_size"})


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
    r"""The default objective: mean cross-entropy of :func:`logits_of`, plus accuracy.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> loss, metrics = cross_entropy_loss(nn.Linear(4, 3), torch.randn(8, 4),
        ...                                    torch.randint(0, 3, (8,)))
        >>> sorted(metrics), loss.shape
        (['accuracy', 'loss'], torch.Size([]))
    """
    logits = logits_of(model, x)
    loss = F.cross_entropy(logits, y)
    accuracy = (logits.argmax(dim=1) == y).float().mean()
    return loss, {"loss": float(loss.detach()), "accuracy": float(accuracy)}


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed determined by ``seed`` and ``keys``, e.g. ``(seed, "shuffle", epoch)``.

    Hashing (SHA-256) instead of ``seed + epoch`` keeps the streams of neighbouring seeds and
    epochs unrelated.

    Example:
        >>> a = derive_seed(0, "shuffle", 1)
        >>> a == derive_seed(0, "shuffle", 1), a == derive_seed(1, "shuffle", 1)
        (True, False)
    """
    text = "/".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` (0-based) of a run with ``seed`` visits ``n`` samples.

    Drawn on the CPU, so it does not depend on the training device; under distributed
    training each rank takes its :func:`~preimage.train.distributed.shard_indices` share.

    Example:
        >>> p = epoch_permutation(5, seed=0, epoch=0)
        >>> sorted(p.tolist()), torch.equal(p, epoch_permutation(5, seed=0, epoch=0))
        ([0, 1, 2, 3, 4], True)
    """
    g = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    return torch.randperm(n, generator=g)


class Callback:
    """Hooks into :meth:`Trainer.fit`; subclass and override what you need (all no-ops here).

    Epochs are numbered from 1. ``step`` of :meth:`on_batch_end` counts optimisation steps
    over the whole run (also across a resume), from 1. Hooks run on every rank of a
    distributed run; test ``trainer.is_main_process`` before writing anything.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, epoch, metrics):
        ...         print(epoch, round(metrics["train_loss"], 1))
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once per :meth:`Trainer.fit`, after a resume has been loaded."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called before the first step of ``epoch``."""

    def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """Called after each optimisation step with that batch's metrics."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after ``epoch``'s evaluation and checkpoint, with its history entry."""

    def on_train_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Called when :meth:`Trainer.fit` finishes normally, with the final metrics."""


class _LossModule(nn.Module):
    """Puts the whole objective inside ``forward`` so that DDP sees, and syncs, its gradients."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        # A partial, unlike an nn.Module loss, is not registered as a submodule: DDP must
        # synchronise the model's parameters only, not those of an auxiliary network in the loss.
        self.loss_fn = functools.partial(loss_fn)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        return self.loss_fn(self.model, x, y)


class Trainer:
    r"""Train a classifier with the paper's recipe, checkpointing after every epoch.

    One step: draw the next batch of the epoch's permutation, shift it by up to
    ``max_shift`` pixels and dequantise it (:mod:`preimage.train.augment`), compute
    ``loss, metrics = loss_fn(model, x, y)``, back-propagate, optionally clip the gradient
    norm, and take an optimiser step (with ``lr_schedule="cosine"`` the learning rate then
    anneals by one step). After each epoch the step schedule's learning rate decays
    (:class:`~torch.optim.lr_scheduler.StepLR`), the test set is evaluated, the history gets an
    entry and, with ``out_dir``, ``out_dir/checkpoints/last.safetensors`` and
    ``out_dir/metrics.json`` are rewritten atomically.

    **The loss_fn hook.** ``loss_fn(model, x, y) -> (loss, metrics)`` receives the bare model
    (with all its methods: ``logits``, ``split``, ...), an augmented batch on the training
    device and integer labels; it returns the scalar tensor to minimise and a
    ``dict[str, float]`` to log (averaged per epoch into ``train_<name>``; ``train_loss`` is
    always the returned loss). The trainer calls ``backward`` and steps the optimiser of the
    model's parameters. A loss with its own parameters and inner optimiser (e.g. the
    independence cross-entropy's nuisance classifier) keeps them outside ``model`` and may step
    its inner optimiser inside the call, provided the model's gradients do not leak into that
    inner update (detach the model's outputs there). If ``loss_fn`` has ``state_dict`` and
    ``load_state_dict`` (an ``nn.Module``, say), its state is checkpointed and resumed too, and
    so is the state of its inner optimiser when it exposes one as ``loss_fn.optimizer`` (as
    :class:`preimage.losses.ice.IndependenceCrossEntropy` does); an ``nn.Module`` loss is moved
    to the training device. In distributed runs only the model's
    gradients are averaged across processes.

    **Distributed runs.** Launched under ``torchrun``, the trainer joins the process group by
    itself (:func:`~preimage.train.distributed.init_distributed`), trains on this rank's shard
    of every epoch's permutation with per-process batches of ``batch_size``, averages the
    gradients with DDP (wrapped around the objective, so that a ``logits`` method is synced
    too), all-reduces the metrics and lets rank 0 alone write files and draw progress. Call
    :func:`~preimage.train.distributed.cleanup` at the end of the script.

    **Evaluation** always measures the cross-entropy and accuracy of :func:`logits_of` on
    unaugmented inputs, whatever the training objective.

    Args:
        model: the network; moved to the configured device.
        train_data: ``(images, labels)``, images floating point (in :math:`[0, 1]` when
            dequantising), labels integer of shape ``(N,)``.
        test_data: evaluated after every epoch, or ``None``.
        config: hyper-parameters.
        loss_fn: objective; :func:`cross_entropy_loss` by default.
        out_dir: run directory for ``checkpoints/`` and ``metrics.json``; nothing is written
            when ``None`` (and resuming is impossible).
        callbacks: :class:`Callback` instances, called in order.
        progress: draw a rich progress bar per epoch (rank 0 only) on stderr.
        model_class: name recorded in (and required of) checkpoints; defaults to the class
            name of ``model``.

    Attributes:
        history: one dict per finished epoch with ``epoch`` (from 1), ``train_loss``,
            ``train_accuracy`` (default loss), ``test_loss``/``test_accuracy`` (with test
            data), ``lr``, ``epoch_time_s`` (training plus evaluation) and ``samples_per_s``
            (training samples of all processes per second of training).
        optimizer: the optimiser of the current :meth:`fit` (``None`` before).
        scheduler: its learning-rate scheduler.
        global_step: optimisation steps taken so far in the run.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        appendix D.2.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x, y = torch.rand(32, 1, 6, 6), torch.randint(0, 2, (32,))
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
        >>> cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", max_shift=1)
        >>> trainer = Trainer(net, (x, y), (x, y), cfg, progress=False)
        >>> final = trainer.fit()
        >>> [h["epoch"] for h in trainer.history], sorted(final)[:3]
        ([1, 2], ['epoch', 'epoch_time_s', 'lr'])
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: tuple[Tensor, Tensor],
        test_data: tuple[Tensor, Tensor] | None,
        config: TrainConfig,
        *,
        loss_fn: LossFn | None = None,
        out_dir: str | Path | RunDir | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        model_class: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Trainer needs a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"Trainer needs a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.train_images, self.train_labels = _check_data(
            train_data, "train_data", in_unit_interval=config.dequantize
        )
        self.test_data = None if test_data is None else _check_data(test_data, "test_data")
        self.context: DistributedContext = init_distributed(resolve_device(config.device))
        self.device = self.context.device
        self.model = model.to(self.device)
        self.loss_fn: LossFn = cross_entropy_loss if loss_fn is None else loss_fn
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(self.device)
        self.run: RunDir | None = (
            None if out_dir is None else out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)
        )
        self.out_dir = None if self.run is None else self.run.path
        self.callbacks = tuple(callbacks)
        self.progress = progress
        self.model_class = type(model).__name__ if model_class is None else model_class
        if self.context.is_distributed:
            self._initialize_data_dependent_layers()
        self._train_module = self.context.wrap_model(_LossModule(self.model, self.loss_fn))
        self.history: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.global_step = 0

    @torch.no_grad()
    def _initialize_data_dependent_layers(self) -> None:
        """Run data-dependent initialisations (ActNorm) on the same batch in every process.

        Outside DDP they happen on the first training batch. Under DDP each process would see a
        different shard there and the replicas would start from different parameters, which
        gradient averaging never repairs; so the first ``batch_size`` training samples, identical
        on every rank, initialise them before the model is wrapped.
        """
        pending = [
            m
            for m in self.model.modules()
            if isinstance(getattr(m, "initialized", None), Tensor) and not bool(m.initialized)
        ]
        if not pending:
            return
        was_training = self.model.training
        self.model.train()
        x = self.train_images[: self.config.batch_size].to(self.device)
        logits_of(self.model, x)
        self.model.train(was_training)

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes files (always true outside distributed runs)."""
        return self.context.is_main_process()

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoints/last.safetensors``, or ``None`` without ``out_dir``."""
        return None if self.run is None else self.run.checkpoints / CHECKPOINT_FILE

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs and return the last epoch's history entry.

        Args:
            resume: continue from ``out_dir/checkpoints/last.safetensors`` if it exists (from
                the epoch after the one it completed; a fresh run otherwise). The checkpoint
                must come from the same model class and a config that differs at most in
                ``epochs``, ``device`` and ``eval_batch_size``.

        Raises:
            ConfigError: ``resume`` without ``out_dir``, or a checkpoint from another config.
            CheckpointError: the checkpoint is unreadable or does not fit the model.
            TrainingError: the loss became NaN or infinite; the last checkpoint is left as it
                was after the last good epoch.
        """
        cfg = self.config
        self.optimizer = _build_optimizer(self.model, cfg)
        self.scheduler = _build_scheduler(self.optimizer, cfg, self._steps_per_epoch())
        self.history = []
        self.global_step = 0
        start = self._resume() if resume else 0
        for cb in self.callbacks:
            cb.on_train_start(self)
        with self._progress_bar() as bar:
            for epoch in range(start, cfg.epochs):
                self._run_epoch(epoch, bar)
        final = dict(self.history[-1]) if self.history else {}
        for cb in self.callbacks:
            cb.on_train_end(self, final)
        return final

    @torch.no_grad()
    def evaluate(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        """Mean cross-entropy and accuracy of :func:`logits_of` on ``(images, labels)``.

        Runs in eval mode without gradients, in batches of ``eval_batch_size``, and restores
        the model's previous mode. In a distributed run each process evaluates its share and
        the results are all-reduced, so every rank must call it.

        Example:
            >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
            >>> t = Trainer(net, (torch.rand(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)),
            ...             None, TrainConfig(device="cpu"), progress=False)
            >>> sorted(t.evaluate(torch.rand(6, 1, 2, 2), torch.ones(6, dtype=torch.long)))
            ['accuracy', 'loss']
        """
        images, labels = _check_data((images, labels), "evaluate")
        mine = torch.arange(images.shape[0])[self.context.rank :: self.context.world_size]
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct = 0.0, 0
        try:
            for chunk in mine.split(self.config.eval_batch_size):
                x, y = self._batch(images, labels, chunk)
                logits = logits_of(self.model, x)
                loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
        finally:
            self.model.train(was_training)
        loss_sum, correct_f, n = self._reduce([loss_sum, float(correct), float(mine.numel())])
        return {"loss": loss_sum / n, "accuracy": correct_f / n}

    def _resume(self) -> int:
        path = self.checkpoint_path
        if path is None:
            raise ConfigError("fit(resume=True) needs an out_dir to find the checkpoint in")
        if not path.exists():
            return 0
        assert self.optimizer is not None and self.scheduler is not None
        # Compare configs before touching the model, so a refused resume changes nothing.
        try:
            saved = json.loads(read_checkpoint_metadata(path).get("state", "{}"))["config"]
        except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
            raise CheckpointError(f"checkpoint {path} holds no readable training state") from None
        # A cosine schedule spans all epochs, so there changing them changes every step's lr.
        free = _RESUME_FREE_FIELDS - ({"epochs"} if self.config.lr_schedule == "cosine" else set())
        # Checkpoints written before a field existed trained with its default.
        defaults = TrainConfig().to_dict()
        changed = sorted(
            k
            for k, v in self.config.to_dict().items()
            if k not in free and saved.get(k, defaults[k]) != v
        )
        if changed:
            raise ConfigError(
                f"cannot resume {path}: it was trained with different {', '.join(changed)}"
            )
        state = load_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            expected_model_class=self.model_class,
        )
        for key, part in _loss_parts(self.loss_fn).items():
            if key not in state:
                raise ConfigError(f"cannot resume {path}: it holds no {key} state")
            part.load_state_dict(state[key])
        self.history = [dict(h) for h in state["history"]]
        self.global_step = int(state["global_step"])
        return int(state["epoch"])

    def _run_epoch(self, epoch: int, bar: Progress | None) -> None:
        assert self.optimizer is not None and self.scheduler is not None
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch + 1)
        lr = float(self.optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        sums, seen = self._train_epoch(epoch, bar)
        train_time = time.perf_counter() - t0
        self.context.broadcast_buffers(self.model)
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update({f"train_{k}": v / seen for k, v in sums.items()})
        if self.test_data is not None:
            test = self.evaluate(*self.test_data)
            record.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
        if self.config.lr_schedule == "step":
            self.scheduler.step()
        record.update(
            lr=lr,
            epoch_time_s=time.perf_counter() - t0,
            samples_per_s=seen / train_time if train_time > 0 else math.inf,
        )
        self.history.append(record)
        if bar is not None and not bar.console.is_terminal:
            # Logs and pipes get no live bar; one line per epoch keeps long runs observable.
            shown = " ".join(
                f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float) and k != "lr"
            )
            bar.console.print(f"epoch {epoch + 1}/{self.config.epochs} {shown}", soft_wrap=True)
        self._write_run_files(epoch)
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch + 1, dict(record))

    def _train_epoch(self, epoch: int, bar: Progress | None) -> tuple[dict[str, float], float]:
        cfg, ctx = self.config, self.context
        assert self.optimizer is not None
        order = ctx.shard(epoch_permutation(self.train_images.shape[0], cfg.seed, epoch))
        batches = order.split(cfg.batch_size)
        if cfg.max_steps_per_epoch is not None:
            batches = batches[: cfg.max_steps_per_epoch]
        aug = torch.Generator(device=self.device)
        aug.manual_seed(derive_seed(cfg.seed, "augment", epoch, ctx.rank))
        task = None
        if bar is not None:
            total = sum(b.numel() for b in batches) * ctx.world_size
            task = bar.add_task(
                "", total=total, epoch=epoch + 1, loss=math.nan, acc=math.nan, rate=0.0
            )
        sums: dict[str, float] = {}
        seen = 0
        self.model.train()
        start = time.perf_counter()
        with _epoch_rng(self.device, derive_seed(cfg.seed, "torch", epoch, ctx.rank)):
            for step, idx in enumerate(batches, start=1):
                x, y = self._batch(self.train_images, self.train_labels, idx)
                if cfg.max_shift > 0:
                    x = random_shift(x, cfg.max_shift, aug)
                if cfg.dequantize:
                    x = dequantize(x, aug)
                metrics = self._step(x, y, epoch, step)
                n = y.numel()
                seen += n
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                self.global_step += 1
                if task is not None:
                    bar.update(  # type: ignore[union-attr]
                        task,
                        advance=n * ctx.world_size,
                        loss=sums["loss"] / seen,
                        # loss_fn hooks may name it "acc" (the iCE does).
                        acc=sums.get("accuracy", sums.get("acc", math.nan)) / seen,
                        rate=seen * ctx.world_size / (time.perf_counter() - start),
                    )
                for cb in self.callbacks:
                    cb.on_batch_end(self, self.global_step, metrics)
        keys = sorted(sums)
        totals = self._reduce([sums[k] for k in keys] + [float(seen)])
        if task is not None:
            bar.update(task, loss=totals[keys.index("loss")] / totals[-1])  # type: ignore[union-attr]
        return dict(zip(keys, totals[:-1], strict=True)), totals[-1]

    def _reduce(self, values: list[float]) -> list[float]:
        """Sums of ``values`` over all processes (float64 on cpu/cuda, the distributed devices)."""
        if not self.context.is_distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.context.all_reduce_sum(t).tolist()

    def _step(self, x: Tensor, y: Tensor, epoch: int, step: int) -> dict[str, float]:
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = self._train_module(x, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TrainingError("loss_fn must return a scalar tensor as its first value")
        # Summed over ranks, so that a non-finite loss on any rank stops all of them together.
        value = float(self.context.all_reduce_sum(loss.detach().reshape(())))
        if not math.isfinite(value):
            where = (
                f"the last good checkpoint {self.checkpoint_path} is left intact"
                if self.checkpoint_path is not None and self.checkpoint_path.exists()
                else "no checkpoint was written"
            )
            raise TrainingError(
                f"loss became {value} at epoch {epoch + 1} step {step}; {where}; "
                "try a lower lr or grad_clip"
            )
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.config.lr_schedule == "cosine":
            assert self.scheduler is not None
            self.scheduler.step()
        out = {k: float(v) for k, v in metrics.items()}
        out["loss"] = float(loss.detach()) if self.context.is_distributed else value
        return out

    def _steps_per_epoch(self) -> int:
        """Optimisation steps of one epoch on this process (the same on every rank)."""
        # shard_indices gives every rank ceil(n / world_size) samples.
        n = math.ceil(self.train_images.shape[0] / self.context.world_size)
        steps = math.ceil(n / self.config.batch_size)
        cap = self.config.max_steps_per_epoch
        return steps if cap is None else min(steps, cap)

    def _batch(self, images: Tensor, labels: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        x = images[idx.to(images.device)]
        y = labels[idx.to(labels.device)]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _write_run_files(self, epoch: int) -> None:
        if self.run is not None and self.is_main_process:
            state: dict[str, Any] = {
                "epoch": epoch + 1,
                "global_step": self.global_step,
                "history": self.history,
                "config": self.config.to_dict(),
                "world_size": self.context.world_size,
            }
            for key, part in _loss_parts(self.loss_fn).items():
                state[key] = part.state_dict()
            save_checkpoint(
                self.run.checkpoint_path(CHECKPOINT_FILE),
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state=state,
                model_class=self.model_class,
            )
            # Through RunDir, so that non-finite values become null like every other metric.
            self.run.write_metrics(
                {
                    "epochs_completed": len(self.history),
                    "final": self.history[-1],
                    "history": self.history,
                }
            )
        # Nobody reads a half-written checkpoint: all ranks go on once rank 0 has finished.
        self.context.barrier()

    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[Progress | None]:
        if not (self.progress and self.is_main_process):
            yield None
            return
        columns = (
            TextColumn(f"epoch {{task.fields[epoch]}}/{self.config.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}"),
            TextColumn("{task.fields[rate]:.0f} samples/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            yield bar


def _build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters")
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.lr_schedule == "step":
        # Stepped once per epoch by the trainer.
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_decay)
    # Stepped after every optimisation step: step t (0-based) of T runs at lr * cosine_factor(t).
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(cosine_factor, total=cfg.epochs * steps_per_epoch),
    )


def cosine_factor(step: int, total: int) -> float:
    r"""The cosine schedule's learning-rate multiplier :math:`\tfrac12 (1 + \cos(\pi t / T))`.

    Step ``t`` (0-based) of ``total`` steps runs at the base learning rate times this factor:
    1 at the first step, falling to almost 0 at the last (``t = T - 1``).

    References:
        Loshchilov & Hutter (2017), *SGDR: Stochastic Gradient Descent with Warm Restarts*,
        section 3, equation (5) with one cycle and :math:`\eta_{\min} = 0`.

    Example:
        >>> [round(cosine_factor(t, 4), 3) for t in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@contextlib.contextmanager
def _epoch_rng(device: torch.device, seed: int) -> Iterator[None]:
    # Seeding a forked RNG makes in-epoch randomness a function of (seed, epoch, rank), so a
    # resumed run needs no saved RNG state, and the caller's RNG is left as it was.
    accel = device.type in ("cuda", "mps")
    devices = [device.index or 0] if accel else []
    kwargs = {"device_type": device.type} if accel else {}
    with torch.random.fork_rng(devices=devices, **kwargs):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        elif device.type == "mps":
            torch.mps.manual_seed(seed)
        yield


def _loss_parts(loss_fn: object) -> dict[str, Any]:
    """The checkpointed pieces of a loss: itself if stateful, and its inner ``optimizer``."""
    parts: dict[str, Any] = {}
    if callable(getattr(loss_fn, "state_dict", None)) and callable(
        getattr(loss_fn, "load_state_dict", None)
    ):
        parts["loss_fn"] = loss_fn
    inner = getattr(loss_fn, "optimizer", None)
    if isinstance(inner, torch.optim.Optimizer):
        parts["loss_fn_optimizer"] = inner
    return parts


def _check_data(
    data: object, name: str, *, in_unit_interval: bool = False
) -> tuple[Tensor, Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(f"{name} must be a pair (images, labels) of tensors")
    images, labels = data
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise DataError(f"{name} must be a pair (images, labels) of tensors")
    if images.dim() < 2 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ShapeError(
            f"{name}: images (N, ...) and labels (N,) expected, got shapes "
            f"{tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{name} is empty")
    if not images.is_floating_point():
        raise DataError(f"{name}: images must be floating point, got {images.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"{name}: labels must be integers, got {labels.dtype}")
    if in_unit_interval:
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name}: dequantize=True expects images in [0, 1], got range [{lo:g}, {hi:g}]"
            )
    return images, labels.long()
