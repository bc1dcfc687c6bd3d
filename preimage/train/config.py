r"""Hyper-parameters of a training run and the device they run on.

The defaults are the MNIST recipe of the core paper: Adamax with base learning rate
:math:`10^{-3}`, multiplied by :math:`0.2` every 30 epochs, 100 epochs, batch size 64, l2 weight
decay :math:`10^{-4}`, random shifts of up to 3 pixels and uniform dequantisation.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.2 (MNIST training details).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from preimage.errors import ConfigError

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "TrainConfig", "check_device_name", "resolve_device"]

OPTIMIZERS: tuple[str, ...] = ("adamax", "adam", "sgd")
"""Names accepted by :attr:`TrainConfig.optimizer`."""

LR_SCHEDULES: tuple[str, ...] = ("step", "cosine")
"""Names accepted by :attr:`TrainConfig.lr_schedule`."""

_DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    r"""Everything that determines a training trajectory, validated on construction.

    The learning rate follows the paper's step schedule (``lr_schedule="step"``),
    :math:`\eta_e = \eta \cdot \gamma^{\lfloor e / s \rfloor}` for the 0-based epoch :math:`e`,
    with :math:`\gamma` = ``lr_decay`` and :math:`s` = ``lr_step``, or, with
    ``lr_schedule="cosine"`` (not in the paper; SGDR's single cycle, Loshchilov & Hutter 2017), a
    cosine annealing per optimisation step,
    :math:`\eta_t = \tfrac{\eta}{2} \bigl(1 + \cos(\pi t / T)\bigr)` for the 0-based step
    :math:`t` of :math:`T` = ``epochs`` :math:`\times` steps per epoch, which ignores
    ``lr_decay`` and ``lr_step``; there ``epochs`` shapes the whole trajectory, so a cosine run
    cannot be resumed with a different ``epochs``. ``weight_decay`` is the
    classic l2 penalty added to the gradient (the paper's "l2 weight decay"), not decoupled
    AdamW-style decay.

    Attributes:
        epochs: number of passes over the training set.
        batch_size: samples per optimisation step and per process (a run on ``k`` processes
            averages gradients over ``k * batch_size`` samples, as PyTorch's DDP does).
        lr: base learning rate.
        optimizer: ``"adamax"``, ``"adam"`` or ``"sgd"``.
        weight_decay: l2 penalty coefficient.
        lr_decay: factor applied to the learning rate every ``lr_step`` epochs.
        lr_step: epochs between two learning-rate decays.
        lr_schedule: ``"step"`` (the paper's) or ``"cosine"`` (see above).
        max_shift: largest random translation in pixels (per axis) of image batches.
        dequantize: add uniform noise to 8-bit inputs, :math:`x \mapsto (255x + u)/256`.
        seed: drives shuffling, augmentation and in-epoch randomness such as dropout; it does
            not seed model initialisation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        eval_batch_size: batch size of evaluation passes.
        grad_clip: clip the global gradient norm to this value; ``None`` disables clipping.
        max_steps_per_epoch: stop each epoch after this many steps (smoke runs); ``None`` runs
            full epochs.
        momentum: momentum of ``"sgd"``; ignored by the Adam variants. Not part of the paper's
            recipe (which uses Adamax); added so that SGD has no hidden constant.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        appendix D.2. Loshchilov & Hutter (2017), *SGDR: Stochastic Gradient Descent with Warm
        Restarts*, section 3 (the cosine annealing).

    Example:
        >>> cfg = TrainConfig(epochs=2, max_steps_per_epoch=5)
        >>> cfg.optimizer, cfg.lr, cfg.batch_size
        ('adamax', 0.001, 64)
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamax"
    weight_decay: float = 1e-4
    lr_decay: float = 0.2
    lr_step: int = 30
    max_shift: int = 3
    dequantize: bool = True
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    grad_clip: float | None = None
    max_steps_per_epoch: int | None = None
    momentum: float = 0.9
    lr_schedule: str = "step"

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        self.lr = _check_float("lr", self.lr, positive=True)
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ConfigError(
                f"TrainConfig.optimizer must be one of {', '.join(OPTIMIZERS)}, "
                f"got {self.optimizer!r}"
            )
        self.optimizer = self.optimizer.lower()
        self.weight_decay = _check_float("weight_decay", self.weight_decay, positive=False)
        self.lr_decay = _check_float("lr_decay", self.lr_decay, positive=True)
        _check_int("lr_step", self.lr_step, minimum=1)
        _check_int("max_shift", self.max_shift, minimum=0)
        if not isinstance(self.dequantize, bool):
            raise ConfigError(f"TrainConfig.dequantize must be a bool, got {self.dequantize!r}")
        _check_int("seed", self.seed, minimum=0)
        if self.seed >= 2**63:
            raise ConfigError(f"TrainConfig.seed must be < 2**63, got {self.seed}")
        check_device_name(self.device)
        _check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        if self.grad_clip is not None:
            self.grad_clip = _check_float("grad_clip", self.grad_clip, positive=True)
        if self.max_steps_per_epoch is not None:
            _check_int("max_steps_per_epoch", self.max_steps_per_epoch, minimum=1)
        self.momentum = _check_float("momentum", self.momentum, positive=False)
        if self.momentum >= 1.0:
            raise ConfigError(f"TrainConfig.momentum must be < 1, got {self.momentum}")
        if not isinstance(self.lr_schedule, str) or self.lr_schedule.lower() not in LR_SCHEDULES:
            raise ConfigError(
                f"TrainConfig.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                f"got {self.lr_schedule!r}"
            )
        self.lr_schedule = self.lr_schedule.lower()

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ConfigError: ``data`` is not a mapping, has unknown keys or invalid values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


def resolve_device(name: str) -> torch.device:
    """Turn a device name into an available :class:`torch.device`.

    ``"auto"`` picks CUDA if available, else Apple's MPS if available, else the CPU.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``.

    Raises:
        ConfigError: the name is malformed or names a device this machine does not have.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA devices exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available")
    return device


def check_device_name(name: object) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a device name preimage accepts."""
    if not isinstance(name, str):
        raise ConfigError(f"device must be a string, got {name!r}")
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"invalid device {name!r}; use auto, cpu, cuda, cuda:<index> or mps"
        ) from None
    if device.type not in _DEVICE_TYPES:
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:<index> or mps")


def _check_int(field: str, value: object, *, minimum: int) -> None:
    # bool is a subclass of int, but True epochs is a bug, not a request.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"TrainConfig.{field} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"TrainConfig.{field} must be >= {minimum}, got {value}")


def _check_float(field: str, value: object, *, positive: bool) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"TrainConfig.{field} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"TrainConfig.{field} must be finite, got {value}")
    if positive and value <= 0:
        raise ConfigError(f"TrainConfig.{field} must be > 0, got {value}")
    if not positive and value < 0:
        raise ConfigError(f"TrainConfig.{field} must be >= 0, got {value}")
    return value
