r"""Projected gradient descent (PGD): the standard epsilon-bounded perturbation attack.

Untargeted PGD ascends the cross-entropy :math:`\ell(x') = \mathrm{CE}(f(x'), y)` inside the
ball :math:`\|x' - x\|_p \le \varepsilon` and the input box:

.. math::

    x^{(0)} = \Pi_{[l, u]}(x + \delta_0),\qquad
    x^{(t+1)} = \Pi_{[l, u]}\Big(x + \Pi_{\varepsilon}\big(x^{(t)} + \alpha\,
        n(\nabla \ell(x^{(t)})) - x\big)\Big),

with :math:`n(g) = g / \|g\|_2` for :math:`L_2` and :math:`n(g) = \operatorname{sign}(g)` for
:math:`L_\infty`, step size :math:`\alpha` = ``rel_stepsize`` :math:`\cdot\,\varepsilon` (or
``abs_stepsize``), and :math:`\delta_0` uniform in the ball when ``random_start`` (else 0).
These produce *perturbation-based* adversarial examples (definition 2), the complement of the
invariance-based ones of :mod:`preimage.attacks.metamer` and :mod:`preimage.attacks.feature`.

The call ``attack(model, inputs, labels, *, epsilons, seed=None)`` returns one
:class:`~preimage.attacks.base.EpsilonResult` per epsilon, which unpacks as Foolbox's
``raw, clipped, success``: ``raw`` is the attack's output, ``clipped`` that output projected onto
the epsilon ball and the bounds, ``success`` whether the model's decision on ``clipped`` differs
from ``labels``. Each epsilon is attacked from scratch, as in Foolbox.

Deviation: the brief of this project fixes ``steps=40`` for both norms; Foolbox's
``L2ProjectedGradientDescentAttack`` defaults to 50 steps (its ``LinfPGD`` to 40).

References:
    Madry, Makelov, Schmidt, Tsipras, Vladu (2018), *Towards Deep Learning Models Resistant to
    Adversarial Attacks*, section 2.1. Rauber et al. (2017), *Foolbox*,
    ``attacks/gradient_descent_base.py`` and ``attacks/projected_gradient_descent.py``.
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
    definition 2 (perturbation-based adversarial examples).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.attacks.base import Attack, Bounds, EpsilonResult
from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import logits_of

__all__ = ["L2PGD", "LinfPGD", "ProjectedGradientDescent"]


def _batch_view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _epsilon_list(epsilons: float | Sequence[float]) -> list[float]:
    values = [epsilons] if isinstance(epsilons, (int, float)) else list(epsilons)
    if not values:
        raise ConfigError("epsilons must hold at least one value")
    out = []
    for eps in values:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise ConfigError(f"every epsilon must be a number, got {eps!r}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ConfigError(f"every epsilon must be finite and >= 0, got {eps!r}")
        out.append(float(eps))
    return out


class ProjectedGradientDescent(Attack[list[EpsilonResult]]):
    r"""Untargeted PGD; subclasses fix the norm through four small hooks.

    Hooks: :meth:`random_start` (a perturbation uniform in the ball), :meth:`normalize` (the
    steepest-ascent direction of the norm), :meth:`project` (onto the ball around zero) and
    :meth:`norm` (per-sample distances).

    Subclasses share this constructor and only set ``default_rel_stepsize``.

    Args:
        steps: gradient steps per epsilon, at least 1 (default 40).
        rel_stepsize: step size relative to epsilon (default: the subclass'
            ``default_rel_stepsize``).
        abs_stepsize: absolute step size; takes precedence over ``rel_stepsize`` when given.
        random_start: start from a uniform sample of the ball instead of the input.
        bounds: the input box; every iterate is clipped into it.

    References:
        Rauber et al. (2017), *Foolbox*, ``attacks/gradient_descent_base.py``.
    """

    default_rel_stepsize: float = 0.025

    def __init__(
        self,
        *,
        steps: int = 40,
        rel_stepsize: float | None = None,
        abs_stepsize: float | None = None,
        random_start: bool = True,
        bounds: Bounds = Bounds(),
    ) -> None:
        super().__init__(bounds=bounds)
        if rel_stepsize is None:
            rel_stepsize = self.default_rel_stepsize
        # Zero steps would return the (random) start and call it an attack.
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        if not (math.isfinite(rel_stepsize) and rel_stepsize >= 0):
            raise ConfigError(f"rel_stepsize must be finite and >= 0, got {rel_stepsize!r}")
        if abs_stepsize is not None and not (math.isfinite(abs_stepsize) and abs_stepsize >= 0):
            raise ConfigError(f"abs_stepsize must be None or finite and >= 0, got {abs_stepsize}")
        self.steps = steps
        self.rel_stepsize = float(rel_stepsize)
        self.abs_stepsize = abs_stepsize
        self.random_start = bool(random_start)

    @abstractmethod
    def random_start_delta(
        self, x: Tensor, epsilon: float, generator: torch.Generator | None
    ) -> Tensor:
        """A perturbation shaped like ``x``, uniform in the epsilon ball."""

    @abstractmethod
    def normalize(self, grad: Tensor) -> Tensor:
        """Steepest-ascent direction of unit norm for the gradient ``grad``."""

    @abstractmethod
    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        """Euclidean projection of per-sample perturbations onto the epsilon ball."""

    @abstractmethod
    def norm(self, delta: Tensor) -> Tensor:
        """Per-sample norms, shape ``(batch,)``."""

    def run(
        self,
        model: nn.Module,
        inputs: Tensor,
        labels: Tensor,
        *,
        epsilons: float | Sequence[float],
        seed: int | None = None,
    ) -> list[EpsilonResult]:
        labels = self._check_labels(labels, inputs)
        eps_list = _epsilon_list(epsilons)
        with torch.no_grad():
            num_classes = logits_of(model, inputs[:1]).shape[1]
        if int(labels.max()) >= num_classes:
            raise ConfigError(f"labels must lie in [0, {num_classes}), got {int(labels.max())}")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=inputs.device).manual_seed(int(seed))
        return [self._attack(model, inputs, labels, eps, generator) for eps in eps_list]

    def _check_labels(self, labels: Tensor, inputs: Tensor) -> Tensor:
        if not isinstance(labels, Tensor):
            raise ConfigError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dim() != 1 or labels.shape[0] != inputs.shape[0]:
            raise ShapeError(
                f"labels must have shape ({inputs.shape[0]},), got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ConfigError(f"labels must be integer class indices, got {labels.dtype}")
        if int(labels.min()) < 0:
            raise ConfigError("labels must be non-negative class indices")
        return labels.to(device=inputs.device, dtype=torch.long)

    def _attack(
        self,
        model: nn.Module,
        x0: Tensor,
        labels: Tensor,
        epsilon: float,
        generator: torch.Generator | None,
    ) -> EpsilonResult:
        if self.abs_stepsize is not None:
            stepsize = self.abs_stepsize
        else:
            stepsize = self.rel_stepsize * epsilon
        if self.random_start:
            x = self.bounds.clip(x0 + self.random_start_delta(x0, epsilon, generator))
        else:
            x = x0.clone()
        for _ in range(self.steps):
            x.requires_grad_(True)
            loss = F.cross_entropy(logits_of(model, x), labels, reduction="sum")
            # autograd.grad w.r.t. x only: the model's parameter gradients stay untouched.
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = x.detach() + stepsize * self.normalize(grad)
                x = self.bounds.clip(x0 + self.project(x - x0, epsilon))
        raw = x.detach()
        with torch.no_grad():
            clipped = self.bounds.clip(x0 + self.project(raw - x0, epsilon))
            success = logits_of(model, clipped).argmax(dim=1) != labels
            distance = self.norm(clipped - x0)
        return EpsilonResult(
            x_adv=clipped, success=success, distance=distance, epsilon=epsilon, raw=raw
        )


class L2PGD(ProjectedGradientDescent):
    r"""PGD in the Euclidean norm: :math:`\|x' - x\|_2 \le \varepsilon` per sample.

    The gradient is normalised to unit :math:`L_2` norm, the projection rescales perturbations
    longer than :math:`\varepsilon`, and the random start is uniform in the ball (Voelker et al.
    (2017): the first :math:`n` coordinates of a uniform point on the :math:`(n+1)`-sphere).

    Args: those of :class:`ProjectedGradientDescent`; ``rel_stepsize`` defaults to Foolbox's
    0.025 (Foolbox's L2 ``steps`` default is 50; see the module note) and ``random_start``
    starts uniformly in the ball.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(4, 3)
        >>> x, y = torch.rand(5, 4), torch.randint(0, 3, (5,))
        >>> (r,) = L2PGD(steps=5)(model, x, y, epsilons=[0.1], seed=0)
        >>> raw, clipped, success = r
        >>> bool(((clipped - x).norm(dim=1) <= 0.1 + 1e-6).all()), success.shape
        (True, torch.Size([5]))

    References:
        Madry et al. (2018), section 2.1; Rauber et al. (2017), *Foolbox*,
        ``L2ProjectedGradientDescentAttack``.
    """

    default_rel_stepsize = 0.025

    def random_start_delta(
        self, x: Tensor, epsilon: float, generator: torch.Generator | None
    ) -> Tensor:
        batch, n = x.shape[0], x[0].numel()
        g = torch.randn(batch, n + 2, generator=generator, device=x.device, dtype=x.dtype)
        on_sphere = g / g.norm(dim=1, keepdim=True)
        return epsilon * on_sphere[:, :n].reshape(x.shape)

    def normalize(self, grad: Tensor) -> Tensor:
        return grad / _batch_view(self.norm(grad).clamp_min(1e-12), grad)

    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        norms = self.norm(delta).clamp_min(1e-12)
        factor = torch.clamp(epsilon / norms, max=1.0)
        return delta * _batch_view(factor, delta)

    def norm(self, delta: Tensor) -> Tensor:
        return delta.reshape(delta.shape[0], -1).norm(p=2, dim=1)


class LinfPGD(ProjectedGradientDescent):
    r"""PGD in the maximum norm: :math:`\|x' - x\|_\infty \le \varepsilon` per sample.

    The step follows the sign of the gradient, the projection clips every coordinate to
    :math:`[-\varepsilon, \varepsilon]` and the random start is uniform in that cube.

    Args: those of :class:`ProjectedGradientDescent`; ``steps`` defaults to Foolbox's 40,
    ``rel_stepsize`` to Foolbox's 0.01 / 0.3, and ``random_start`` starts uniformly in the cube.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(4, 3)
        >>> x, y = torch.rand(5, 4), torch.randint(0, 3, (5,))
        >>> results = LinfPGD(steps=5)(model, x, y, epsilons=[0.0, 0.05], seed=0)
        >>> [round(float(r.distance.max()), 6) <= r.epsilon for r in results]
        [True, True]

    References:
        Madry et al. (2018), section 2.1; Rauber et al. (2017), *Foolbox*,
        ``LinfProjectedGradientDescentAttack``.
    """

    default_rel_stepsize = 0.01 / 0.3

    def random_start_delta(
        self, x: Tensor, epsilon: float, generator: torch.Generator | None
    ) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return epsilon * (2.0 * u - 1.0)

    def normalize(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def project(self, delta: Tensor, epsilon: float) -> Tensor:
        return delta.clamp(-epsilon, epsilon)

    def norm(self, delta: Tensor) -> Tensor:
        return delta.reshape(delta.shape[0], -1).abs().amax(dim=1)
