"""Experiments of the papers, one module each, behind ``preimage run STUDY --budget ...``.

Each study module defines ``Config`` (a :class:`~preimage.studies.base.StudyConfig`) and
``run(config, out_dir, *, argv=None) -> metrics``. A module that serves several studies (variants
of one experiment) holds one object with ``Config`` and ``run`` per variant, registered as
``"module:Variant"``.
"""

from __future__ import annotations

import importlib

from preimage.errors import ConfigError
from preimage.studies.base import BUDGETS, Budget, Study, StudyConfig

__all__ = ["BUDGETS", "STUDIES", "Budget", "StudyConfig", "get_study"]

STUDIES: dict[str, str] = {
    # Excessive invariance (Jacobsen et al. 2019), sections 2-4.
    "spheres": "preimage.studies.spheres",
    "metamers-mnist": "preimage.studies.metamers_mnist",
    "nuisance-info": "preimage.studies.nuisance_info",
    "shiftmnist-binary": "preimage.studies.shiftmnist:Binary",
    "shiftmnist-texture": "preimage.studies.shiftmnist:Texture",
    "feature-adversaries": "preimage.studies.feature_adversaries",
    # Invertible residual networks (thesis chapters 4-5).
    "iresnet-reconstruction": "preimage.studies.iresnet_reconstruction",
    "iresnet-singular-values": "preimage.studies.iresnet_singular_values",
    "logdet-estimator": "preimage.studies.logdet_estimator",
    "toy-density": "preimage.studies.toy_density",
    "iresnet-mnist-classify": "preimage.studies.iresnet_mnist_classify",
    "iresnet-mnist-flow": "preimage.studies.iresnet_mnist_flow",
    # A rate-distortion theory of adversarial examples (Galloway et al. 2018), sections 4.1-4.4.
    "fault-tolerance": "preimage.studies.fault_tolerance",
    "gradient-snr": "preimage.studies.gradient_snr",
    "info-plane": "preimage.studies.info_plane",
    "label-prototypes": "preimage.studies.label_prototypes",
    "random-labels": "preimage.studies.random_labels",
    "sphere-packing": "preimage.studies.sphere_packing",
    # Domain knowledge for imaging mass spectrometry (thesis chapter 7).
    "ims-classify": "preimage.studies.ims_classify",
    # Pre-images of ReLU layers and inverse stability (thesis chapter 3).
    "relu-preimage-toy": "preimage.studies.relu_preimage_toy",
    "relu-preimage-mnist": "preimage.studies.relu_preimage_mnist",
    "inverse-stability": "preimage.studies.inverse_stability",
    # Information-regularised networks (ICLR 2019 submission), sections 4-5.
    "reginvnet-features": "preimage.studies.reginvnet_features",
    "info-regularized": "preimage.studies.info_regularized",
}
"""Study name -> module path (``"module:Variant"`` for one variant of a module); modules are
imported on demand (their imports are heavy)."""


def get_study(name: str) -> Study:
    """The module (or variant object) of study ``name``, with ``Config`` and ``run``.

    Raises:
        ConfigError: an unknown name.

    Example:
        >>> get_study("shiftmnist-texture").Config.VARIANT
        'texture'
    """
    try:
        path = STUDIES[name]
    except KeyError:
        known = ", ".join(sorted(STUDIES)) or "none yet"
        raise ConfigError(f"unknown study {name!r}; known studies: {known}") from None
    module_path, _, variant = path.partition(":")
    module = importlib.import_module(module_path)
    return getattr(module, variant) if variant else module  # type: ignore[return-value]
