r"""Residual pieces of the i-ResNet studies that the library does not have (yet): a small
residual classifier with a linear head (constrained or plain), the plain-Adam recipe the
chapter-4 studies train it with, converging every spectral layer, and fixed-point inversion
with a fixed number of steps or with the lemma-4.5 trace.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 4 (algorithm 1,
    lemma 4.5, figures 4.2-4.4) and appendix A.1 (injective padding, invertible downsampling,
    3-1-3 convolution branches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from preimage.errors import ConfigError
from preimage.models.residual import ResidualClassifier, plain_conv_branch
from preimage.nn.base import InvertibleSequential
from preimage.nn.iresblock import FixedPointTrace, IResBlock, iterate_contraction
from preimage.nn.spectral import converge_spectral
from preimage.studies.base import StudyConfig
from preimage.train import TrainConfig, Trainer

__all__ = [
    "ResidualClassifier",
    "ResidualClassifierConfig",
    "ResidualStudyConfig",
    "adam_recipe",
    "check_coeffs",
    "converge_spectral",
    "fixed_point_trace",
    "invert_with_iterations",
    "plain_conv_branch",
    "trained_classifier",
]


def adam_recipe(**overrides: Any) -> TrainConfig:
    """Plain Adam with a constant learning rate and no augmentation, batch 64, lr 1e-3.

    How the studies of thesis chapters 4-5 train their small networks (the library's default
    recipe is the core paper's Adamax with step decay, shifts and dequantisation).

    Example:
        >>> cfg = adam_recipe(epochs=2)
        >>> cfg.optimizer, cfg.lr_decay, cfg.max_shift, cfg.dequantize, cfg.epochs
        ('adam', 1.0, 0, False, 2)
    """
    base: dict[str, Any] = {
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": 64,
        "weight_decay": 0.0,
        "lr_decay": 1.0,
        "max_shift": 0,
        "dequantize": False,
    }
    return TrainConfig(**{**base, **overrides})


def trained_classifier(
    train: tuple[Tensor, Tensor],
    recipe: TrainConfig,
    *,
    coeff: float | None,
    n_blocks: int,
    hidden: int,
    pad_channels: int = 4,
    progress: bool = False,
) -> ResidualClassifier:
    """A :class:`ResidualClassifier` for ``train``'s images, trained with cross-entropy by
    :class:`~preimage.train.Trainer`; returned in eval mode, its power iterations as training
    left them (seed torch before calling: the initialisation uses the global generator).

    Example:
        >>> x, y = torch.rand(16, 1, 4, 4), torch.randint(0, 10, (16,))
        >>> net = trained_classifier((x, y), adam_recipe(epochs=1, batch_size=8, device="cpu"),
        ...                          coeff=0.9, n_blocks=1, hidden=4)
        >>> net.training, net.logits(x).shape
        (False, torch.Size([16, 10]))
    """
    model = ResidualClassifier(
        tuple(train[0].shape[1:]),  # type: ignore[arg-type]
        n_blocks=n_blocks,
        hidden=hidden,
        coeff=coeff,
        pad_channels=pad_channels,
    )
    Trainer(model, train, None, recipe, progress=progress).fit()
    return model.eval()


@dataclass(frozen=True)
class ResidualClassifierConfig:
    """Architecture of a :class:`ResidualClassifier` (all but the input shape and ``coeff``).

    Attributes:
        n_blocks: residual blocks.
        hidden: hidden channels of each branch.
        pad_channels: zero channels appended after the squeeze.

    Example:
        >>> from dataclasses import asdict
        >>> net = ResidualClassifier((1, 4, 4), coeff=0.9, **asdict(ResidualClassifierConfig(1, 4)))
        >>> len(net.body)
        3
    """

    n_blocks: int = 4
    hidden: int = 32
    pad_channels: int = 4


def invert_with_iterations(body: InvertibleSequential, z: Tensor, n_iter: int) -> Tensor:
    r"""Invert ``body`` with exactly ``n_iter`` fixed-point steps per residual block.

    Unlike :meth:`IResBlock.inverse` there is no stopping rule and no Lipschitz requirement,
    so it also runs (and may diverge) on unconstrained ResNets (thesis algorithm 1 with a
    fixed budget, as in figure 4.4): each block is solved by
    :func:`~preimage.nn.iresblock.iterate_contraction` with ``stop=False``.

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.5).eval()
        >>> x = torch.randn(2, 1, 4, 4)
        >>> with torch.no_grad():
        ...     z, _ = net.body(x)
        ...     x_rec = invert_with_iterations(net.body, z, 40)
        >>> bool((x_rec - x).abs().max() < 1e-5)
        True
    """
    with torch.no_grad():
        for layer in reversed(list(body)):
            if isinstance(layer, IResBlock):
                z, _ = _fixed_steps(layer.g, z, None, n_iter)
            else:
                z = layer.inverse(z)
    return z


def fixed_point_trace(
    g: Callable[[Tensor], Tensor], x: Tensor, lip: float, n_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""True error and a-posteriori bound of each fixed-point step inverting ``x + g(x)``.

    Starting from :math:`x^{[0]} = y = x + g(x)`, step :math:`k` gives the worst sample's
    :math:`\|x - x^{[k]}\|_2` and its lemma-4.5 bound
    :math:`\min(L^k\|x^{[1]}-x^{[0]}\|, L\|x^{[k]}-x^{[k-1]}\|)/(1-L)`, as traced by
    :func:`~preimage.nn.iresblock.iterate_contraction` (``stop=False, trace=True``).

    Returns:
        ``(errors, bounds)``, two arrays of length ``n_iter``; the bound of a sample is only
        a bound when ``lip`` bounds :math:`\mathrm{Lip}(g)`; ``nan`` when ``lip >= 1``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, algorithm 1, lemma 4.5.

    Example:
        >>> errors, bounds = fixed_point_trace(lambda v: 0.5 * v, torch.ones(1, 2), 0.5, 5)
        >>> bool((errors <= bounds).all()), bool(errors[-1] < errors[0])
        (True, True)
    """
    with torch.no_grad():
        _, trace = _fixed_steps(g, x + g(x), lip, n_iter, trace=True)
        assert trace is not None  # asked for above
        errors = (trace.iterates - x).flatten(2).norm(dim=2).amax(dim=1)
        bounds = trace.bounds.amax(dim=1)
    return errors.double().cpu().numpy(), bounds.cpu().numpy()


def _fixed_steps(
    g: Callable[[Tensor], Tensor], y: Tensor, lip: float | None, n_iter: int, trace: bool = False
) -> tuple[Tensor, FixedPointTrace | None]:
    r"""``n_iter`` plain steps :math:`x \leftarrow y - g(x)` from :math:`x = y` (no stopping)."""
    x, diagnostics = iterate_contraction(
        lambda v: y - g(v), y, lip, 0.0, 0.0, n_iter, stop=False, trace=trace
    )
    return x, diagnostics.trace


@dataclass(frozen=True)
class ResidualStudyConfig(StudyConfig):
    """Fields shared by the chapter-4 studies that train several :class:`ResidualClassifier`
    (defaults: the ``cpu`` budget; the ``smoke`` and ``paper`` budgets hold the overrides
    those studies share, which each study extends).

    Attributes:
        dataset: ``"mnist"`` or ``"digits"``.
        coeffs: spectral coefficients of the networks.
        model: architecture of every network (:class:`ResidualClassifierConfig`).
        train: training of every network (:class:`~preimage.train.TrainConfig`, by default
            :func:`adam_recipe`: plain Adam, constant learning rate, no augmentation; its
            ``seed`` and ``device`` follow the study's, network ``i`` trains with ``seed + i``).

    Example:
        >>> ResidualStudyConfig.for_budget("smoke").model.n_blocks
        2
    """

    dataset: str = "mnist"
    coeffs: tuple[float, ...] = (0.5, 0.7, 0.9)
    model: ResidualClassifierConfig = field(default_factory=ResidualClassifierConfig)
    train: TrainConfig = field(
        default_factory=lambda: adam_recipe(epochs=2, max_steps_per_epoch=750)
    )

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "dataset": "digits",
            "model.n_blocks": 2,
            "model.hidden": 16,
            "train.max_steps_per_epoch": 20,
            "train.lr": 3e-3,
        },
        "cpu": {},
        "paper": {
            "model.n_blocks": 21,
            "model.hidden": 64,
            "train.epochs": 43,
            "train.max_steps_per_epoch": None,
            "train.batch_size": 128,
        },
    }


def check_coeffs(config: ResidualStudyConfig) -> None:
    """Refuse spectral coefficients outside :math:`(0, 1)` (no contraction, no inverse).

    Raises:
        ConfigError: an empty ``coeffs`` or one outside :math:`(0, 1)`.

    Example:
        >>> check_coeffs(ResidualStudyConfig(coeffs=(1.2,)))
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: coeffs must be in (0, 1), got (1.2,)
    """
    if not config.coeffs or any(not 0 < c < 1 for c in config.coeffs):
        raise ConfigError(f"coeffs must be in (0, 1), got {config.coeffs}")
