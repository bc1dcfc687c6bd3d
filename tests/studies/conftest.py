"""Fixtures shared by the study smoke tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load_file

from preimage.train import read_checkpoint_metadata


def _state(path: Path) -> dict:
    return json.loads(read_checkpoint_metadata(path)["state"])


def _check_ice_trained_ice(ce_path: Path, ice_path: Path) -> None:
    ce, ice = _state(ce_path), _state(ice_path)
    assert ce["objective"] == "ce" and ice["objective"] == "ice"
    # Only the iCE history carries the in-loop adversary's and the prior's terms ...
    assert {"train_nce", "train_mle", "train_nuisance_acc"} <= set(ice["history"][-1])
    assert "train_nce" not in ce["history"][-1]
    # ... and, from the same initial weights and batches, it ends elsewhere than CE (where both
    # have the same architecture: spheres gives its iCE model other couplings).
    a, b = load_file(str(ce_path)), load_file(str(ice_path))
    if set(a) == set(b) and all(a[k].shape == b[k].shape for k in a):
        assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) > 1e-6


@pytest.fixture
def ice_trained_ice() -> Callable[[Path, Path], None]:
    """Check that a study's ``ice`` checkpoint was trained with iCE, not plain cross-entropy."""
    return _check_ice_trained_ice
