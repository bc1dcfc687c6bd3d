"""Tests of preimage.train.config: the paper's defaults, validation, device resolution."""

from __future__ import annotations

import json

import pytest
import torch

from preimage.errors import ConfigError
from preimage.train.config import TrainConfig, resolve_device


def test_defaults_are_the_paper_mnist_recipe() -> None:
    # Appendix D.2: Adamax, lr 1e-3, x0.2 every 30 epochs, 100 epochs, batch 64, l2 1e-4,
    # shifts of 3 pixels, dequantisation.
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.lr_decay, cfg.lr_step) == ("adamax", 1e-3, 0.2, 30)
    assert (cfg.epochs, cfg.batch_size, cfg.weight_decay) == (100, 64, 1e-4)
    assert (cfg.max_shift, cfg.dequantize) == (3, True)
    assert (cfg.seed, cfg.device, cfg.eval_batch_size) == (0, "auto", 512)
    assert cfg.grad_clip is None and cfg.max_steps_per_epoch is None
    assert cfg.lr_schedule == "step"
    assert TrainConfig(lr_schedule="Cosine").lr_schedule == "cosine"


def test_dict_round_trip_through_json() -> None:
    cfg = TrainConfig(epochs=3, optimizer="SGD", grad_clip=1, max_steps_per_epoch=7, lr=2)
    assert cfg.optimizer == "sgd" and cfg.grad_clip == 1.0 and isinstance(cfg.lr, float)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_from_dict_fills_defaults_and_rejects_unknown_keys() -> None:
    assert TrainConfig.from_dict({"epochs": 5}) == TrainConfig(epochs=5)
    with pytest.raises(ConfigError, match="unknown TrainConfig keys: bogus, lrr"):
        TrainConfig.from_dict({"lrr": 1.0, "bogus": 2})
    with pytest.raises(ConfigError, match="expects a dict"):
        TrainConfig.from_dict([("epochs", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"epochs": 2.0},
        {"epochs": True},
        {"batch_size": 0},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"lr": "1e-3"},
        {"optimizer": "rmsprop"},
        {"weight_decay": -1e-4},
        {"lr_decay": 0.0},
        {"lr_step": 0},
        {"max_shift": -1},
        {"dequantize": 1},
        {"seed": -1},
        {"seed": 2**63},
        {"device": "banana"},
        {"device": "xla"},
        {"device": 0},
        {"eval_batch_size": 0},
        {"grad_clip": 0.0},
        {"grad_clip": float("inf")},
        {"max_steps_per_epoch": 0},
        {"momentum": 1.0},
        {"lr_schedule": "onecycle"},
        {"lr_schedule": None},
    ],
)
def test_invalid_values_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**bad)
    message = str(info.value)
    assert next(iter(bad)) in message or "device" in message
    assert "\n" not in message


def test_validation_also_runs_on_from_dict() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": -3})


def test_resolve_device_cpu_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_resolve_device_rejects_missing_and_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="only 1 CUDA devices"):
        resolve_device("cuda:3")
    for name in ("banana", "cuda:x", "meta", ""):
        with pytest.raises(ConfigError):
            resolve_device(name)
