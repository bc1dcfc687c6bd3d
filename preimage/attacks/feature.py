r"""Feature adversaries: approximate metamers of any network by gradient descent in input space.

For a network (or sub-network) :math:`G`, a source image :math:`x` and a target image
:math:`\tilde x`, the attack solves

.. math::

    \min_{x'} \; L_{MSE}\big(G(x'), G(\tilde x)\big)
        = \frac{1}{K} \sum_{k=1}^{K} \big(G(x')_k - G(\tilde x)_k\big)^2,
    \qquad x'_0 = x,\; x' \in [\text{lower}, \text{upper}]^d,

with Adam (PyTorch defaults, learning rate 0.01, 3000 iterations), i.e. an attack that targets
every entry of :math:`G` with no norm restriction on the input distance. It is the
gradient-based counterpart of metameric sampling: approximate, but applicable to networks
without an inverse (definition 1 (i) and (ii) pre-images).

Deviations from the paper, and why:

- The box constraint is enforced by projection (clamping :math:`x'` onto the bounds after every
  optimiser step) rather than by optimising an unconstrained variable through a clamp, whose
  gradient vanishes at the bounds and would freeze saturated pixels. The paper states no input
  constraint; images outside the valid range would not be images.
- Batches are optimised jointly: the objective is the *sum* of the per-sample MSEs, so each
  sample receives exactly the gradient of its own MSE, and with Adam (element-wise) a batch
  follows the same trajectories as separate runs.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 ("Attack on MNIST and ImageNet") and appendix B (equation 8).
    Sabour, Cao, Faghri, Fleet (2016), *Adversarial Manipulation of Deep Representations*.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from preimage.attacks.base import Attack, AttackResult, Bounds
from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import model_output

__all__ = ["Criterion", "LogitMetamer"]

Criterion = Callable[[Tensor, Tensor], Tensor]
"""``criterion(reference, x_adv) -> BoolTensor (batch,)``, e.g.
``functools.partial(invariance_success, model, oracle)`` from :mod:`preimage.attacks.criteria`."""

_OPTIMIZERS = ("adam", "sgd")


def _resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ConfigError(
                f"{type(model).__name__} has no submodule {layer!r}; see model.named_modules()"
            ) from None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ConfigError(f"layer {type(layer).__name__} is not a submodule of the model")
        return layer
    raise ConfigError(f"layer must be None, a dotted name or an nn.Module, got {layer!r}")


@contextmanager
def _feature_map(
    model: nn.Module, layer: str | nn.Module | None
) -> Iterator[Callable[[Tensor], Tensor]]:
    """Yield ``G``: the model's output (its logits if it has them) or a submodule's output."""
    if layer is None:
        yield lambda x: model_output(model, x)
        return
    module = _resolve_layer(model, layer)
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        # Invertible blocks return (y, logdet); the features are y.
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    def features(x: Tensor) -> Tensor:
        captured.clear()
        model(x)
        if not captured:
            raise ConfigError(f"layer {layer!r} was not called by the model's forward")
        return captured[-1]

    handle = module.register_forward_hook(hook)
    try:
        yield features
    finally:
        handle.remove()


def _per_sample_mse(features: Tensor, target: Tensor) -> Tensor:
    return (features - target).pow(2).reshape(features.shape[0], -1).mean(dim=1)


class LogitMetamer(Attack[AttackResult]):
    r"""Optimise inputs so that a network's features match those of target inputs (appendix B).

    Starting from the source inputs, minimises the per-sample mean squared error between
    :math:`G(x')` and :math:`G(\tilde x)` with :math:`G` the model's logits (``layer=None``; an
    invertible classifier's ``logits`` method when present) or the output of a chosen submodule,
    captured by a forward hook (the first element when the submodule returns a tuple, as
    invertible blocks do; the last call when it is called several times).

    Args:
        steps: maximum number of optimiser steps (paper: 3000).
        lr: learning rate (paper: 0.01).
        optimizer: ``"adam"`` (paper; PyTorch defaults otherwise) or ``"sgd"``.
        bounds: the box inputs live in; iterates are projected onto it after every step.
        layer: ``None`` for the model output, or a submodule (object or dotted name as in
            ``model.named_modules()``) whose output is matched.
        tol: per-sample early stop: a sample whose MSE drops to ``tol`` is frozen at that
            iterate; the loop ends when all samples are frozen. Also the success threshold.
        progress: show a progress bar (``rich``).

    Call:
        ``attack(model, inputs, target, *, criterion=None) -> AttackResult`` with ``target`` the
        batch whose features are matched (same shape as ``inputs``). ``success`` is
        ``distance <= tol`` when ``tol`` is set; otherwise ``criterion(target, x_adv)`` when a
        criterion is given (the target is the reference whose pre-image the metamer should lie
        in, definition 3); otherwise whether the attack reduced the feature MSE of the sample.
        ``distance`` is the achieved per-sample MSE in feature space; ``extras`` holds
        ``steps_used`` (per-sample long tensor), ``history`` (mean MSE per step, floats),
        ``initial_distance`` (per-sample MSE at the source) and ``wall_time_s``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> g = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, x_target = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
        >>> result = LogitMetamer(steps=300, lr=0.05)(g, x, x_target)
        >>> bool((result.distance < result.extras["initial_distance"]).all())
        True
        >>> bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())
        True

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        appendix B (equation 8) and section 2.1. Sabour et al. (2016), *Adversarial
        Manipulation of Deep Representations* (feature adversaries).
    """

    def __init__(
        self,
        *,
        steps: int = 3000,
        lr: float = 0.01,
        optimizer: str = "adam",
        bounds: Bounds = Bounds(),
        layer: str | nn.Module | None = None,
        tol: float | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(bounds=bounds)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr!r}")
        if optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
        if tol is not None and not tol >= 0:
            raise ConfigError(f"tol must be None or >= 0, got {tol!r}")
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise ConfigError(f"layer must be None, a dotted name or an nn.Module, got {layer!r}")
        self.steps = steps
        self.lr = float(lr)
        self.optimizer = optimizer
        self.layer = layer
        self.tol = tol
        self.progress = progress

    def _make_optimizer(self, x: Tensor) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam([x], lr=self.lr)
        return torch.optim.SGD([x], lr=self.lr)

    def run(
        self,
        model: nn.Module,
        inputs: Tensor,
        target: Tensor,
        *,
        criterion: Criterion | None = None,
    ) -> AttackResult:
        if not isinstance(target, Tensor):
            raise ConfigError(f"target must be a torch.Tensor, got {type(target).__name__}")
        if target.shape != inputs.shape:
            raise ShapeError(
                f"target must have the shape of inputs {tuple(inputs.shape)}, "
                f"got {tuple(target.shape)}"
            )
        if not bool(torch.isfinite(target).all()):
            raise ConfigError("target contains NaN or infinite values")
        target = target.detach().to(device=inputs.device, dtype=inputs.dtype)
        start = time.perf_counter()
        with _feature_map(model, self.layer) as features:
            with torch.no_grad():
                goal = features(target).detach()
            x_adv, info = self._optimise(features, inputs, goal)
            with torch.no_grad():
                distance = _per_sample_mse(features(x_adv), goal)
        if self.tol is not None:
            success = distance <= self.tol
        elif criterion is not None:
            success = criterion(target, x_adv).to(device=distance.device, dtype=torch.bool)
        else:
            success = distance < info["initial_distance"]
        info["wall_time_s"] = time.perf_counter() - start
        return AttackResult(x_adv=x_adv, success=success, distance=distance, extras=info)

    def _optimise(
        self, features: Callable[[Tensor], Tensor], inputs: Tensor, goal: Tensor
    ) -> tuple[Tensor, dict[str, Any]]:
        batch = inputs.shape[0]
        x = inputs.clone().requires_grad_(True)
        opt = self._make_optimizer(x)
        frozen = inputs.clone()
        done = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        steps_used = torch.full((batch,), self.steps, dtype=torch.long, device=inputs.device)
        history: list[float] = []
        initial: Tensor | None = None
        with _progress(self.progress, self.steps) as advance:
            for step in range(self.steps):
                feats = features(x)
                if feats.shape != goal.shape:
                    raise ShapeError(
                        f"features of inputs {tuple(feats.shape)} and target "
                        f"{tuple(goal.shape)} differ"
                    )
                mse = _per_sample_mse(feats, goal)
                mse_value = mse.detach()
                if initial is None:
                    initial = mse_value.clone()
                history.append(float(mse_value.mean()))
                if self.tol is not None:
                    reached = (mse_value <= self.tol) & ~done
                    frozen[reached] = x.detach()[reached]
                    steps_used[reached] = step
                    done |= reached
                    if bool(done.all()):
                        break
                # autograd.grad w.r.t. x only: the model's parameter gradients stay untouched.
                (grad,) = torch.autograd.grad(mse[~done].sum(), x)
                x.grad = grad
                opt.step()
                with torch.no_grad():
                    x.copy_(self.bounds.clip(x))
                advance(history[-1])
        x_adv = torch.where(done.view(-1, *([1] * (inputs.dim() - 1))), frozen, x.detach())
        assert initial is not None
        return x_adv, {"steps_used": steps_used, "history": history, "initial_distance": initial}


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[float], None]]:
    if not enabled:
        yield lambda _mse: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("logit metamer", total=total)

        def advance(mse: float) -> None:
            bar.update(task, advance=1, description=f"logit metamer  mse={mse:.3e}")

        yield advance
