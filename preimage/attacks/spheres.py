r"""The mis-aligned spheres classifier and its analytic perturbation- and invariance-based attacks.

On Adversarial Spheres (inner sphere :math:`\|x\|_2 = R_1`, label 0; outer sphere
:math:`\|x\|_2 = R_2`, label 1) the classifier

.. math::

    D(x) = \operatorname{sign}\big(\|x_{1,\dots,d-n}\|_2 - b\big)

reads the norm of the first :math:`d - n` coordinates only and ignores the last :math:`n`. With
the max-margin bias :math:`b = l + (u - l)/2` on a training set (:math:`l` the largest used-norm
of an inner point, :math:`u` the smallest of an outer point) it is almost perfect on test data,
yet two analytic attacks that stay on the data manifold break it:

- *perturbation-based* (outer sphere): shrink the used coordinates to a norm below :math:`b`
  and grow the unused ones so that :math:`\|x^*\|_2 = R_2`; the decision flips, the oracle
  label (outer) stays.
- *invariance-based* (inner sphere): keep the used coordinates and grow the unused ones so
  that :math:`\|x^*\|_2 = R_2`; the decision stays (inner), the oracle label becomes outer.

Each attack returns, per point, the on-manifold adversarial example of smallest
:math:`\ell_2` distance within its one-parameter family (the used norm just below :math:`b`
for the perturbation attack; the invariance attack has no free parameter), and
:func:`accuracy_under_attack` turns the distances into the accuracy-vs-:math:`\ell_2`-budget
curves of thesis figure 6.3: at budget :math:`\epsilon` a point counts as correct unless the
attack succeeds on it with distance at most :math:`\epsilon`.

Deviations, and why: the thesis states the attacks but not how the accuracy curve treats a
budget smaller than the attack's distance. We count such points as correct (the analytic attack
either reaches the other sphere or it is not applied), which makes each curve a survival
function of the attack distances.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix A (examples 7 and 8, equation 7).
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.2.1, example 6.6 and
    figure 6.3 (d = 500, n = 10, R1 = 1, R2 = 1.3).
    Gilmer et al. (2018), *Adversarial Spheres*.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from preimage.attacks.base import Attack, AttackResult, Bounds
from preimage.attacks.criteria import RadiusOracle, invariance_success, perturbation_success
from preimage.errors import ConfigError, ShapeError

__all__ = [
    "MisalignedSpheresClassifier",
    "SpheresInvarianceAttack",
    "SpheresPerturbationAttack",
    "accuracy_under_attack",
]


class MisalignedSpheresClassifier(nn.Module):
    r"""Max-margin classifier on the norm of the first :math:`d - n` coordinates (example 6.6).

    The logits are :math:`(b - \|x_{1..d-n}\|_2,\ \|x_{1..d-n}\|_2 - b)`, so the decision is
    class 1 (outer) exactly when the used norm exceeds :math:`b`.

    Args:
        dim: input dimension :math:`d`.
        unused: number :math:`n` of trailing coordinates the classifier ignores, in
            :math:`[1, d - 1]`.
        bias: the threshold :math:`b > 0` (see :meth:`fit` for the max-margin choice).

    Example:
        >>> import torch
        >>> from preimage.data import sample_spheres
        >>> x, y = sample_spheres(200, d=50, r1=1.0, r2=1.3, seed=0)
        >>> clf = MisalignedSpheresClassifier.fit(x, y, unused=5)
        >>> bool((clf(x).argmax(1) == y).all())
        True

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, example 6.6.
        Jacobsen et al. (2019), appendix A, equation 7.
    """

    def __init__(self, dim: int, unused: int, bias: float) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ConfigError(f"dim must be an integer >= 2, got {dim!r}")
        if isinstance(unused, bool) or not isinstance(unused, int) or not 1 <= unused < dim:
            raise ConfigError(f"unused must be an integer in [1, {dim - 1}], got {unused!r}")
        if not (math.isfinite(bias) and bias > 0):
            raise ConfigError(f"bias must be finite and > 0, got {bias!r}")
        self.dim = dim
        self.unused = unused
        self.bias = float(bias)

    @property
    def used(self) -> int:
        """Number :math:`d - n` of coordinates the decision reads."""
        return self.dim - self.unused

    @classmethod
    def fit(cls, x: Tensor, y: Tensor, *, unused: int) -> MisalignedSpheresClassifier:
        r"""The max-margin bias :math:`b = l + (u - l)/2` on training points ``x``, labels ``y``.

        Raises:
            ConfigError: a class is missing or the training set is not separable (:math:`l > u`).
        """
        _check_points(x, None)
        if y.shape != (x.shape[0],):
            raise ShapeError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        used_norm = x[:, : x.shape[1] - unused].norm(dim=1)
        inner, outer = used_norm[y == 0], used_norm[y == 1]
        if inner.numel() == 0 or outer.numel() == 0:
            raise ConfigError("fitting the bias needs points of both spheres")
        low, high = float(inner.max()), float(outer.min())
        if low > high:
            raise ConfigError(
                f"the training set is not separable on the used coordinates (l={low:.4g} > "
                f"u={high:.4g}); use fewer unused dimensions"
            )
        return cls(int(x.shape[1]), unused, low + 0.5 * (high - low))

    def used_norm(self, x: Tensor) -> Tensor:
        """:math:`\\|x_{1..d-n}\\|_2` per sample, shape ``(batch,)``."""
        _check_points(x, self.dim)
        return x[:, : self.used].norm(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, 2)``: inner ``b - r_used`` and outer ``r_used - b``."""
        margin = self.used_norm(x) - self.bias
        return torch.stack((-margin, margin), dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unused={self.unused}, bias={self.bias:.6g}"


def _check_points(x: Tensor, dim: int | None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"expected points of shape (batch, d), got {shape}")
    if dim is not None and x.shape[1] != dim:
        raise ShapeError(f"expected points of dimension {dim}, got {x.shape[1]}")


def _check_model(model: nn.Module) -> MisalignedSpheresClassifier:
    if not isinstance(model, MisalignedSpheresClassifier):
        raise ConfigError(
            f"the analytic spheres attacks need a MisalignedSpheresClassifier, got "
            f"{type(model).__name__}"
        )
    return model


class _SpheresAttack(Attack[AttackResult]):
    def __init__(self, *, r1: float, r2: float, slack: float = 1e-4) -> None:
        self.oracle = RadiusOracle(r1, r2)
        super().__init__(bounds=Bounds(-float(r2) * (1 + 1e-3), float(r2) * (1 + 1e-3)))
        if not 0 < slack < 1:
            raise ConfigError(f"slack must lie in (0, 1), got {slack!r}")
        self.r1, self.r2, self.slack = float(r1), float(r2), float(slack)

    # The subclass's success criterion (perturbation- or invariance-based).
    success_fn: Callable[[nn.Module, RadiusOracle, Tensor, Tensor], Tensor]

    @abstractmethod
    def _move(self, clf: MisalignedSpheresClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
        """The moved points and the mask of points the attack applies to."""

    def run(self, model: nn.Module, inputs: Tensor) -> AttackResult:
        clf = _check_model(model)
        x = inputs
        _check_points(x, clf.dim)
        with torch.no_grad():
            moved, applicable = self._move(clf, x)
            x_adv = torch.where(applicable.unsqueeze(1), moved, x)
            success = self.success_fn(clf, self.oracle, x, x_adv) & applicable
            distance = (x_adv - x).norm(dim=1)
        return AttackResult(x_adv, success, distance, {"applicable": applicable})

    def _grow_unused(self, clf: MisalignedSpheresClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
        """Rescale the unused block so that the point lands on the outer sphere."""
        used, rest = x[:, : clf.used], x[:, clf.used :]
        room = self.r2**2 - used.pow(2).sum(dim=1)
        rest_norm = rest.norm(dim=1)
        feasible = (room > 0) & (rest_norm > 0)
        scale = torch.where(
            feasible, room.clamp_min(0).sqrt() / rest_norm.clamp_min(1e-30), torch.ones_like(room)
        )
        return torch.cat((used, rest * scale.unsqueeze(1)), dim=1), feasible


class SpheresPerturbationAttack(_SpheresAttack):
    r"""Analytic perturbation-based attack on outer-sphere points (thesis example 6.6).

    (i) scale the used coordinates to the norm :math:`(1 - \text{slack})\, b`, just below the
    threshold; (ii) rescale the unused coordinates so that :math:`\|x^*\|_2 = R_2`. Inner points,
    and outer points where the classifier already errs, are returned unchanged (not applicable:
    for :math:`b > R_1` no on-manifold perturbation of an inner point flips the decision).

    Args:
        r1: inner radius.
        r2: outer radius.
        slack: relative distance below :math:`b` the used norm is moved to.

    Call:
        ``attack(model, x) -> AttackResult`` with ``success`` =
        :func:`~preimage.attacks.criteria.perturbation_success` under the radius oracle and
        ``distance`` = :math:`\|x^* - x\|_2`.

    Example:
        >>> from preimage.data import sample_spheres
        >>> x, y = sample_spheres(100, d=50, r1=1.0, r2=1.3, seed=0)
        >>> clf = MisalignedSpheresClassifier.fit(x, y, unused=5)
        >>> res = SpheresPerturbationAttack(r1=1.0, r2=1.3)(clf, x)
        >>> bool(res.success[y == 1].all()), bool(res.success[y == 0].any())
        (True, False)

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.2.1, example 6.6.
    """

    success_fn = staticmethod(perturbation_success)

    def _move(self, clf: MisalignedSpheresClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
        used_norm = clf.used_norm(x)
        target = (1 - self.slack) * clf.bias
        scale = target / used_norm.clamp_min(1e-30)
        shrunk = torch.cat((x[:, : clf.used] * scale.unsqueeze(1), x[:, clf.used :]), dim=1)
        moved, feasible = self._grow_unused(clf, shrunk)
        return moved, (self.oracle(x) == 1) & (used_norm > clf.bias) & feasible


class SpheresInvarianceAttack(_SpheresAttack):
    r"""Analytic invariance-based attack on inner-sphere points (thesis example 6.6).

    (i) keep the used coordinates; (ii) rescale the unused coordinates so that
    :math:`\|x^*\|_2 = R_2`. The classifier cannot see the change, so it keeps deciding "inner"
    while the point now lies on the outer sphere. Outer points are returned unchanged.

    Args and call: as :class:`SpheresPerturbationAttack`, with ``success`` =
    :func:`~preimage.attacks.criteria.invariance_success`; ``slack`` is unused here (kept for
    the common signature).

    Example:
        >>> import torch
        >>> from preimage.data import sample_spheres
        >>> x, y = sample_spheres(100, d=50, r1=1.0, r2=1.3, seed=0)
        >>> clf = MisalignedSpheresClassifier.fit(x, y, unused=5)
        >>> res = SpheresInvarianceAttack(r1=1.0, r2=1.3)(clf, x)
        >>> inner = y == 0
        >>> bool(res.success[inner].all()), bool(res.success[~inner].any())
        (True, False)
        >>> radii = res.x_adv[inner].norm(dim=1)  # moved onto the outer sphere
        >>> bool(torch.allclose(radii, torch.full_like(radii, 1.3)))
        True

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.2.1, example 6.6.
    """

    success_fn = staticmethod(invariance_success)

    def _move(self, clf: MisalignedSpheresClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
        moved, feasible = self._grow_unused(clf, x)
        return moved, (self.oracle(x) == 0) & feasible


def accuracy_under_attack(
    correct: Tensor, result: AttackResult, budgets: Sequence[float] | Tensor
) -> Tensor:
    r"""Accuracy at each :math:`\ell_2` budget: correct and not broken within the budget.

    A point counts as correct at budget :math:`\epsilon` when it is clean-correct and the attack
    did not succeed on it with :math:`\|x^* - x\|_2 \le \epsilon`.

    Args:
        correct: bool ``(batch,)``, clean correctness of each attacked point.
        result: the attack's result on the same points.
        budgets: the budgets :math:`\epsilon`.

    Returns:
        Float tensor with one accuracy per budget.

    Example:
        >>> import torch
        >>> r = AttackResult(torch.zeros(3, 2), torch.tensor([True, True, False]),
        ...                  torch.tensor([0.1, 0.5, 0.0]))
        >>> acc = accuracy_under_attack(torch.ones(3, dtype=torch.bool), r, [0.0, 0.2, 1.0])
        >>> [round(a, 3) for a in acc.tolist()]
        [1.0, 0.667, 0.333]
    """
    if correct.dtype != torch.bool or correct.shape != result.success.shape:
        raise ShapeError(
            f"correct must be a bool tensor of shape {tuple(result.success.shape)}, got "
            f"{correct.dtype} {tuple(correct.shape)}"
        )
    eps = torch.as_tensor(budgets, dtype=result.distance.dtype, device=result.distance.device)
    broken = result.success.unsqueeze(0) & (result.distance.unsqueeze(0) <= eps.reshape(-1, 1))
    keep = correct.to(broken.device).unsqueeze(0) & ~broken
    return keep.float().mean(dim=1)
