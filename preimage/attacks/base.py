r"""Value types, result objects and the base class shared by every attack.

An attack is a configured callable: its hyper-parameters are keyword-only constructor arguments,
and ``attack(model, inputs, ...)`` validates the inputs, runs the model in eval mode (restoring
every submodule's training flag afterwards), never mutates the inputs and returns a small result
object. Subclasses only fill :meth:`Attack.run`.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2 (definitions 2-3: perturbation- and invariance-based adversarial
    examples, both "created by an algorithm :math:`A: \mathbb{R}^d \to \mathbb{R}^d`").
    Rauber, Brendel, Bethge (2017), *Foolbox*, ``attacks/base.py`` (the shape of this module).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "Attack",
    "AttackResult",
    "Bounds",
    "EpsilonResult",
    "eval_mode",
]

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Bounds:
    r"""Box :math:`[\text{lower}, \text{upper}]` that every valid input lies in, element-wise.

    Args:
        lower: smallest allowed input value.
        upper: largest allowed input value; must exceed ``lower``.

    Example:
        >>> import torch
        >>> b = Bounds(0.0, 1.0)
        >>> b.clip(torch.tensor([-0.5, 0.3, 2.0]))
        tensor([0.0000, 0.3000, 1.0000])
        >>> b.contains(torch.tensor([0.0, 1.0])), b.width
        (True, 1.0)

    References:
        Rauber et al. (2017), *Foolbox*, ``types.py`` (``Bounds``).
    """

    lower: float = 0.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ConfigError(f"bounds must be finite, got ({self.lower}, {self.upper})")
        if not self.lower < self.upper:
            raise ConfigError(f"bounds need lower < upper, got ({self.lower}, {self.upper})")

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower

    def clip(self, x: Tensor) -> Tensor:
        """Project ``x`` element-wise onto the box (a new tensor; ``x`` is left alone)."""
        return x.clamp(self.lower, self.upper)

    def contains(self, x: Tensor) -> bool:
        """Whether every entry of ``x`` lies in the box."""
        return bool(((x >= self.lower) & (x <= self.upper)).all())


@dataclass(frozen=True)
class AttackResult:
    r"""What an attack found, per sample.

    Attributes:
        x_adv: the adversarial inputs, same shape as the attacked inputs.
        success: bool tensor of shape ``(batch,)``; the attack's success criterion per sample.
        distance: float tensor of shape ``(batch,)``; the attack's distance per sample (an input
            norm for perturbation attacks, a feature-space error for feature adversaries).
        extras: anything else an attack reports (step counts, histories, timings).

    Example:
        >>> import torch
        >>> r = AttackResult(torch.zeros(2, 3), torch.tensor([True, False]), torch.ones(2))
        >>> r.success_rate
        0.5

    References:
        Rauber et al. (2017), *Foolbox*, ``attacks/base.py`` (attacks return inputs found and
        success flags).
    """

    x_adv: Tensor
    success: Tensor
    distance: Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        batch = self.x_adv.shape[0]
        if self.success.dtype != torch.bool or tuple(self.success.shape) != (batch,):
            raise ShapeError(
                f"success must be a bool tensor of shape ({batch},), got "
                f"{self.success.dtype} {tuple(self.success.shape)}"
            )
        if tuple(self.distance.shape) != (batch,):
            raise ShapeError(
                f"distance must have shape ({batch},), got {tuple(self.distance.shape)}"
            )

    @property
    def success_rate(self) -> float:
        """Fraction of successful samples."""
        return float(self.success.float().mean())


@dataclass(frozen=True, kw_only=True)
class EpsilonResult(AttackResult):
    r"""Result of a fixed-epsilon attack at one epsilon, in Foolbox's ``(raw, clipped, success)``.

    ``x_adv`` holds the *clipped* inputs: the attack's raw output projected onto the epsilon ball
    around the inputs and into the bounds; ``success`` is judged on them and ``distance`` is their
    norm distance to the inputs. Iterating yields ``raw, clipped, success`` so that
    ``raw, clipped, success = result`` reads like Foolbox.

    Attributes:
        epsilon: the perturbation budget of this result.
        raw: the attack's output before the final projection.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 2)
        >>> r = EpsilonResult(x_adv=x, success=torch.tensor([False]), distance=torch.zeros(1),
        ...                   epsilon=0.1, raw=x)
        >>> raw, clipped, success = r
        >>> bool(torch.equal(clipped, r.clipped)), success.tolist()
        (True, [False])

    References:
        Rauber et al. (2017), *Foolbox*, ``attacks/base.py`` (``FixedEpsilonAttack.__call__``).
    """

    epsilon: float
    raw: Tensor

    @property
    def clipped(self) -> Tensor:
        """The raw output restricted to the epsilon ball and the bounds (same as ``x_adv``)."""
        return self.x_adv

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.raw, self.x_adv, self.success))


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` and all its submodules in eval mode; restore each one's own flag afterwards.

    Restoring per submodule (instead of ``module.train(was_training)``) keeps deliberately mixed
    states, e.g. a frozen batch-norm inside a training network.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> _ = net[1].eval()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training, net[1].training
        (True, False)
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


class Attack(ABC, Generic[ResultT]):
    r"""Base class: validation, eval mode and input safety around a :meth:`run` hook.

    Subclasses take their hyper-parameters keyword-only in ``__init__`` (calling
    ``super().__init__(bounds=...)``) and implement :meth:`run`, which receives a detached clone
    of the validated inputs with the model already in eval mode.

    Args:
        bounds: the box every input must lie in; attacks keep their outputs inside it.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Identity(Attack[AttackResult]):
        ...     def run(self, model, inputs):
        ...         ok = torch.ones(len(inputs), dtype=torch.bool)
        ...         return AttackResult(inputs, ok, torch.zeros(len(inputs)))
        >>> Identity()(nn.Linear(2, 2), torch.rand(3, 2)).success_rate
        1.0

    References:
        Rauber et al. (2017), *Foolbox*, ``attacks/base.py``.
    """

    def __init__(self, *, bounds: Bounds = Bounds()) -> None:
        if not isinstance(bounds, Bounds):
            raise ConfigError(f"bounds must be a Bounds, got {type(bounds).__name__}")
        self.bounds = bounds

    def __call__(self, model: nn.Module, inputs: Tensor, *args: Any, **kwargs: Any) -> ResultT:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        x = self.validate_inputs(inputs)
        with eval_mode(model):
            return self.run(model, x, *args, **kwargs)

    def validate_inputs(self, inputs: Tensor, name: str = "inputs") -> Tensor:
        """Check a batch and return a detached clone of it.

        Raises:
            ConfigError: not a floating-point tensor, not finite, or outside :attr:`bounds`.
            ShapeError: no batch dimension or an empty batch.
        """
        if not isinstance(inputs, Tensor):
            raise ConfigError(f"{name} must be a torch.Tensor, got {type(inputs).__name__}")
        if inputs.dim() < 2 or inputs.shape[0] == 0:
            raise ShapeError(
                f"{name} must be a non-empty batch (batch, ...), got shape {tuple(inputs.shape)}"
            )
        if not inputs.is_floating_point():
            raise ConfigError(f"{name} must be floating point, got {inputs.dtype}")
        if not bool(torch.isfinite(inputs).all()):
            raise ConfigError(f"{name} contain NaN or infinite values")
        if not self.bounds.contains(inputs):
            raise ConfigError(
                f"{name} lie outside the bounds [{self.bounds.lower}, {self.bounds.upper}] "
                f"(min {float(inputs.min()):.4g}, max {float(inputs.max()):.4g})"
            )
        return inputs.detach().clone()

    @abstractmethod
    def run(self, model: nn.Module, inputs: Tensor, *args: Any, **kwargs: Any) -> ResultT:
        """The attack itself; ``inputs`` are a validated clone and ``model`` is in eval mode."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
