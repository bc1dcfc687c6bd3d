r"""Watching the iCE minimax game: is the in-loop adversary fooled, or is the label gone?

The independence cross-entropy (:class:`~preimage.losses.ice.IndependenceCrossEntropy`) trains
the network against an in-loop nuisance classifier. A low accuracy of that classifier means
little by itself: the network can *fool* one adversary (rescale :math:`z_n`, make it
confidently wrong) without removing the label from :math:`z_n`. Two measurements separate the
cases:

* :class:`IceGameMonitor`, a trainer callback: after every epoch, the in-loop adversary's
  accuracy on held-out codes next to that of a **fresh probe** trained on the current
  :math:`z_n`; a large gap is an adversary that is being fooled;
* :func:`probe_length_curve`: after training, the post-hoc nuisance error as a function of the
  probe's training length, with and without standardised inputs; a nuisance error that falls
  with longer training was hidden, not removed.

Deviation, and why: the paper reports one post-hoc number (table 2) and says nothing on how
long the probe trains; these curves are ours, asked for by issue 11 of this project, because
one number cannot tell an adversary that was beaten from one that was fooled.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 3 (definition 5, lemma 10: the adversary's likelihood is a lower
    bound on :math:`I(y; z_n)` that is only as tight as the adversary) and table 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from preimage.analysis.invariance import (
    classification_error,
    fit_nuisance_probe,
    nuisance_features,
)
from preimage.attacks.base import eval_mode
from preimage.errors import ConfigError
from preimage.losses.ice import IndependenceCrossEntropy
from preimage.train.loop import Callback, Trainer

__all__ = ["PROBE_LENGTHS", "IceGameMonitor", "adversary_error", "probe_length_curve"]

PROBE_LENGTHS: tuple[int, ...] = (1, 3, 10, 30)
"""Default probe training lengths (epochs) of :func:`probe_length_curve`."""

Pair = tuple[Tensor, Tensor]


@torch.no_grad()
def adversary_error(loss: IndependenceCrossEntropy, z_n: Tensor, y: Tensor) -> float:
    """Error of the in-loop nuisance classifier of ``loss`` on codes ``z_n`` with labels ``y``
    (it reads :meth:`~IndependenceCrossEntropy.adversary_features` of the whole set).

    Example:
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((6,), 2, stages=1, blocks_per_stage=1, hidden=4)
        >>> ice = IndependenceCrossEntropy(model, 2, 4, nuisance_hidden=8)
        >>> 0.0 <= adversary_error(ice, torch.randn(16, 4), torch.randint(0, 2, (16,))) <= 1.0
        True
    """
    with eval_mode(loss.nuisance):
        features = loss.adversary_features(z_n.to(loss.beta.device, loss.beta.dtype))
        return classification_error(loss.nuisance, features, y)


class IceGameMonitor(Callback):
    r"""After each epoch: in-loop adversary vs a fresh probe on the current :math:`z_n`.

    Adds to the trainer's history entry of the epoch ``game_adversary_error`` (the in-loop
    nuisance classifier on the probe's test codes) and ``game_probe_error`` (a fresh
    ``depth``-layer probe trained ``epochs`` epochs on the current codes of ``probe_train``,
    standardised inputs, evaluated on ``probe_test``). The model is only evaluated; its mode is
    restored. Randomness: the probe is seeded with ``seed + epoch`` and leaves the global RNG
    untouched, so monitoring does not change the training run.

    Args:
        loss: the iCE loss being trained (its nuisance classifier is the in-loop adversary).
        probe_train: ``(images, labels)`` the fresh probe trains on.
        probe_test: ``(images, labels)`` both classifiers are evaluated on.
        epochs: training epochs of the fresh probe.
        hidden: hidden units of the fresh probe.
        depth: linear layers of the fresh probe.
        seed: base seed of the probe.

    Example:
        >>> from preimage.models import FiRevNet
        >>> from preimage.train import TrainConfig, Trainer
        >>> model = FiRevNet((6,), 2, stages=1, blocks_per_stage=1, hidden=4)
        >>> ice = IndependenceCrossEntropy(model, 2, 4, nuisance_hidden=8)
        >>> x = torch.randn(64, 6); y = (x[:, 3] > 0).long()
        >>> monitor = IceGameMonitor(ice, (x, y), (x, y), epochs=1, hidden=8)
        >>> cfg = TrainConfig(epochs=1, device="cpu", max_shift=0, dequantize=False)
        >>> trainer = Trainer(model, (x, y), None, cfg, loss_fn=ice, callbacks=[monitor],
        ...                   progress=False)
        >>> sorted(k for k in trainer.fit() if k.startswith("game_"))
        ['game_adversary_error', 'game_probe_error']
    """

    def __init__(
        self,
        loss: IndependenceCrossEntropy,
        probe_train: Pair,
        probe_test: Pair,
        *,
        epochs: int = 2,
        hidden: int = 512,
        depth: int = 3,
        seed: int = 0,
    ) -> None:
        if not isinstance(loss, IndependenceCrossEntropy):
            raise ConfigError(
                f"IceGameMonitor watches an IndependenceCrossEntropy, got {type(loss).__name__}"
            )
        self.loss = loss
        self.probe_train = probe_train
        self.probe_test = probe_test
        self.epochs = epochs
        self.hidden = hidden
        self.depth = depth
        self.seed = seed
        self.records: list[dict[str, float]] = []

    def measure(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """The two errors for ``model`` now (what :meth:`on_epoch_end` records)."""
        z_train = nuisance_features(model, self.probe_train[0])
        z_test = nuisance_features(model, self.probe_test[0])
        with torch.random.fork_rng(devices=[]):
            probe = fit_nuisance_probe(
                (z_train, self.probe_train[1]),
                (z_test, self.probe_test[1]),
                self.loss.num_classes,
                hidden=self.hidden,
                depth=self.depth,
                epochs=self.epochs,
                seed=self.seed + epoch,
            )
        return {
            "game_adversary_error": adversary_error(self.loss, z_test, self.probe_test[1]),
            "game_probe_error": probe.test_error,
        }

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        record = self.measure(trainer.model, epoch)
        self.records.append({"epoch": float(epoch), **record})
        if trainer.history:
            trainer.history[-1].update(record)


def probe_length_curve(
    model: nn.Module,
    train: Pair,
    test: Pair,
    *,
    lengths: Sequence[int] = PROBE_LENGTHS,
    standardize: Sequence[bool] = (True, False),
    hidden: int = 512,
    depth: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    r"""Post-hoc nuisance test error of a frozen ``model`` over probe training length.

    For each choice in ``standardize`` one probe is trained for ``max(lengths)`` epochs on
    :math:`z_n` of ``train`` and its test error recorded after each of ``lengths`` epochs.

    Returns:
        Rows ``{"standardized": bool, "epochs": int, "test_error": float}``, in order.

    Example:
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((6,), 2, stages=1, blocks_per_stage=1, hidden=4)
        >>> x = torch.randn(64, 6); y = (x[:, 3] > 0).long()
        >>> rows = probe_length_curve(model, (x, y), (x, y), lengths=(1, 2), hidden=8)
        >>> [(r["standardized"], r["epochs"]) for r in rows]
        [(True, 1), (True, 2), (False, 1), (False, 2)]
    """
    if not lengths:
        raise ConfigError("probe_length_curve needs at least one length")
    classes = int(getattr(model, "num_classes", 0)) or int(train[1].max()) + 1
    z_train = nuisance_features(model, train[0])
    z_test = nuisance_features(model, test[0])
    rows: list[dict[str, Any]] = []
    for std in standardize:
        probe = fit_nuisance_probe(
            (z_train, train[1]),
            (z_test, test[1]),
            classes,
            hidden=hidden,
            depth=depth,
            epochs=max(lengths),
            seed=seed,
            standardize=bool(std),
            record_epochs=lengths,
        )
        rows += [
            {"standardized": bool(std), "epochs": e, "test_error": probe.curve[e]}
            for e in sorted(set(lengths))
        ]
    return rows
