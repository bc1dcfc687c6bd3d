"""Training: the paper's recipe as a config, augmentation, checkpoints, a resumable loop.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.2.
"""

from __future__ import annotations

from preimage.train.augment import dequantize, random_shift, translate
from preimage.train.checkpoint import (
    atomic_write_bytes,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from preimage.train.config import LR_SCHEDULES, TrainConfig, resolve_device
from preimage.train.distributed import (
    DistributedContext,
    cleanup,
    init_distributed,
    is_main_process,
    shard_indices,
)
from preimage.train.loop import (
    Callback,
    LossFn,
    Trainer,
    cosine_factor,
    cross_entropy_loss,
    derive_seed,
    epoch_permutation,
)

__all__ = [
    "LR_SCHEDULES",
    "Callback",
    "DistributedContext",
    "LossFn",
    "TrainConfig",
    "Trainer",
    "atomic_write_bytes",
    "cleanup",
    "cosine_factor",
    "cross_entropy_loss",
    "dequantize",
    "derive_seed",
    "epoch_permutation",
    "init_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "random_shift",
    "read_checkpoint_metadata",
    "resolve_device",
    "save_checkpoint",
    "shard_indices",
    "translate",
]
