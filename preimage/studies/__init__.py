"""Experiments of the papers, one module each, behind ``preimage run STUDY --budget ...``.

Each study module defines ``Config`` (a :class:`~preimage.studies.base.StudyConfig`) and
``run(config, out_dir, *, argv=None) -> metrics``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from preimage.errors import ConfigError
from preimage.studies.base import BUDGETS, Budget, StudyConfig

__all__ = ["BUDGETS", "STUDIES", "Budget", "StudyConfig", "get_study"]

STUDIES: dict[str, str] = {
    # Excessive invariance (Jacobsen et al. 2019), sections 2-4.
    "spheres": "preimage.studies.spheres",
    "metamers-mnist": "preimage.studies.metamers_mnist",
    "nuisance-info": "preimage.studies.nuisance_info",
    "shiftmnist-binary": "preimage.studies.shiftmnist_binary",
    "shiftmnist-texture": "preimage.studies.shiftmnist_texture",
    "feature-adversaries": "preimage.studies.feature_adversaries",
    # Invertible residual networks (thesis chapters 4-5).
    "iresnet-reconstruction": "preimage.studies.iresnet_reconstruction",
    "iresnet-singular-values": "preimage.studies.iresnet_singular_values",
    "logdet-estimator": "preimage.studies.logdet_estimator",
    "toy-density": "preimage.studies.toy_density",
    "iresnet-mnist-classify": "preimage.studies.iresnet_mnist_classify",
    "iresnet-mnist-flow": "preimage.studies.iresnet_mnist_flow",
    # Information-regularised networks (ICLR 2019 submission), sections 4-5.
    "reginvnet-features": "preimage.studies.reginvnet_features",
    "info-regularized": "preimage.studies.info_regularized",
}
"""Study name -> module path; modules are imported on demand (their imports are heavy)."""


def get_study(name: str) -> ModuleType:
    """The module of study ``name``; unknown names raise :class:`ConfigError`."""
    try:
        path = STUDIES[name]
    except KeyError:
        known = ", ".join(sorted(STUDIES)) or "none yet"
        raise ConfigError(f"unknown study {name!r}; known studies: {known}") from None
    return importlib.import_module(path)
