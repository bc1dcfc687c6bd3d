"""Invariance-based attacks (metameric sampling, feature adversaries), perturbation attacks (PGD),
oracles and success criteria."""

from __future__ import annotations

from preimage.attacks.base import (
    Attack,
    AttackResult,
    Bounds,
    EpsilonResult,
    eval_mode,
)
from preimage.attacks.criteria import (
    ClassifierOracle,
    Oracle,
    RadiusOracle,
    decision,
    invariance_success,
    perturbation_success,
)
from preimage.attacks.feature import Criterion, LogitMetamer
from preimage.attacks.metamer import interpolate_nuisance, metamer_grid, metameric_sample
from preimage.attacks.pgd import L2PGD, LinfPGD, ProjectedGradientDescent
from preimage.attacks.unbounded import (
    UnboundedGradientAttack,
    class_prototypes,
    gaussian_noise_at_snr,
)

__all__ = [
    "L2PGD",
    "Attack",
    "AttackResult",
    "Bounds",
    "ClassifierOracle",
    "Criterion",
    "EpsilonResult",
    "LinfPGD",
    "LogitMetamer",
    "Oracle",
    "ProjectedGradientDescent",
    "RadiusOracle",
    "UnboundedGradientAttack",
    "class_prototypes",
    "decision",
    "eval_mode",
    "gaussian_noise_at_snr",
    "interpolate_nuisance",
    "invariance_success",
    "metamer_grid",
    "metameric_sample",
    "perturbation_success",
]
