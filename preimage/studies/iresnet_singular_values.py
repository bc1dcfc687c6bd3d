r"""``preimage run iresnet-singular-values``: exact largest singular value of every convolution.

A vanilla ResNet (plain convolutions) and spectrally normalised i-ResNets of the same shape are
trained on MNIST (``smoke``: 8x8 digits). For every convolution the exact operator norm on its
input size is computed (:func:`~preimage.analysis.operator_norm.operator_norm`: dense SVD of
the operator for small inputs, converged Lanczos otherwise; for zero padding the FFT formula of
Sedghi et al. does not apply). The i-ResNets are measured twice: as trained (one power step per
forward pass, so :math:`\tilde\sigma` may lag the weights) and after converging the power
iteration. Targets: every normalised layer has norm :math:`\le c(1 + 10^{-3})` after
convergence, and :func:`~preimage.analysis.operator_norm.lipschitz_certificate` certifies every
block contractive; a deliberately unconstrained layer (a plain convolution put into the
normalised model, scaled so that its block's bound is 1.5) is reported with a norm above
:math:`c` and its block as non-contractive.

Deviation from the thesis: MNIST instead of CIFAR-10, a few blocks instead of 54 and one or
two epochs, to fit the CPU budgets.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, figure 4.2, eq. 4.6, remark 4.9.
    Sedghi, Gupta, Long (2019), *The Singular Values of Convolutional Layers*.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from preimage.analysis.invariance import classification_error
from preimage.analysis.operator_norm import lipschitz_certificate, operator_norm
from preimage.nn.iresblock import IResBlock
from preimage.nn.spectral import SpectralConv2d
from preimage.studies.kit import StudyRun, study_entry
from preimage.studies.residual_parts import (
    ResidualClassifier,
    ResidualStudyConfig,
    check_coeffs,
    converge_spectral,
    trained_classifier,
)
from preimage.train.checkpoint import save_checkpoint

__all__ = ["Config", "conv_norms", "conv_shapes", "run"]


@dataclass(frozen=True)
class Config(ResidualStudyConfig):
    """Settings of the singular-value study (defaults: the ``cpu`` budget): the fields of
    :class:`~preimage.studies.residual_parts.ResidualStudyConfig` (``coeffs``: the
    normalised models), and

    Attributes:
        n_test: test images for the accuracy, a random subset.
        tolerance: relative slack allowed above ``c`` (the target is ``c (1 + tolerance)``).
        violating_bound: block Lipschitz bound produced by the deliberately unconstrained layer.
    """

    n_test: int = 2000
    tolerance: float = 1e-3
    violating_bound: float = 1.5

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **ResidualStudyConfig.BUDGETS["smoke"],
            "coeffs": (0.5, 0.9),
            "train.epochs": 3,
            "n_test": 200,
        },
        "cpu": {},
        "paper": {**ResidualStudyConfig.BUDGETS["paper"], "coeffs": (0.3, 0.5, 0.7, 0.9)},
    }


def conv_norms(model: ResidualClassifier, sample: torch.Tensor) -> list[tuple[str, float]]:
    """Exact operator norm of every convolution in the residual branches, in order.

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.5)
        >>> _ = converge_spectral(net)
        >>> [round(v, 3) for _, v in conv_norms(net, torch.zeros(1, 1, 4, 4))]
        [0.5, 0.5, 0.5]
    """
    modules = dict(model.body.named_modules())
    return [
        (name, operator_norm(modules[name], shape)) for name, shape in conv_shapes(model, sample)
    ]


def _violating_copy(
    model: ResidualClassifier, block_bound: float, sample: torch.Tensor
) -> tuple[nn.Module, str, float]:
    """The model with its first spectral convolution replaced by a plain, unconstrained one.

    The plain layer starts from the normalised weight and is scaled so that the block's
    certified bound becomes ``block_bound`` (> 1 makes the block non-contractive whatever the
    other layers' norms). Returns the model, the layer's name and its exact norm.
    """
    bad = copy.deepcopy(model)
    b_index, block = next((i, m) for i, m in enumerate(bad.body) if isinstance(m, IResBlock))
    index, layer = next((i, m) for i, m in enumerate(block.g) if isinstance(m, SpectralConv2d))
    plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding="same")
    plain = plain.to(sample.device)
    with torch.no_grad():
        plain.weight.copy_(layer.normalized_weight())
        plain.bias.copy_(layer.bias)
    block.g[index] = plain
    name = f"layers.{b_index}.g.{index}"
    [cert] = [c for c in lipschitz_certificate(bad.body, sample) if c.block == f"layers.{b_index}"]
    with torch.no_grad():
        plain.weight.mul_(block_bound / cert.bound)
    seen = dict(conv_shapes(bad, sample))[name]
    return bad, name, operator_norm(plain, seen)


def conv_shapes(
    model: ResidualClassifier, sample: torch.Tensor
) -> list[tuple[str, tuple[int, ...]]]:
    """Input shape of every convolution of the residual branches, in order.

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.5, pad_channels=0)
        >>> conv_shapes(net, torch.zeros(1, 1, 4, 4))[0]
        ('layers.2.g.1', (4, 2, 2))
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.body.named_modules():
        if isinstance(module, nn.Conv2d | SpectralConv2d):

            def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                shapes.append((name, tuple(args[0].shape[1:])))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model.body(sample[:1])
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _figure(norms: dict[str, tuple[list[float], float | None]]) -> Figure:
    fig = Figure(figsize=(11, 4.2))
    ax = fig.subplots()
    names = list(norms)
    n_layers = len(next(iter(norms.values()))[0])
    width = 0.8 / len(names)
    x = np.arange(n_layers)
    for i, (name, (values, coeff)) in enumerate(norms.items()):
        ax.bar(x + i * width, values, width, label=name, color=f"C{i}")
        if coeff is not None:
            ax.axhline(coeff, color=f"C{i}", ls="--", lw=1)
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels([f"conv {i + 1}" for i in range(n_layers)], fontsize=8)
    ax.set_ylabel("largest singular value (exact)")
    ax.set_title("per-layer operator norm; dashed: target c, solid: 1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _key(name: str) -> str:
    """Metrics and checkpoint key of a model: ``c=0.9`` -> ``c09``."""
    return name.replace("=", "").replace(".", "")


def _measure(
    model: ResidualClassifier,
    name: str,
    coeff: float | None,
    sample: Tensor,
    test: tuple[Tensor, Tensor],
    norms: dict[str, tuple[list[float], float | None]],
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Exact norms (as trained and converged for a normalised model), certificate, accuracy.

    Adds the norm series to ``norms``; returns the metrics, the report row and whether every
    block is certified contractive.
    """
    key = _key(name)
    metrics: dict[str, Any] = {}
    if coeff is not None:
        trained = [v for _, v in conv_norms(model, sample)]
        norms[f"{name} as trained"] = (trained, None)
        metrics[f"{key}_max_norm_as_trained"] = max(trained)
        converge_spectral(model)
    values = [v for _, v in conv_norms(model, sample)]
    norms[name] = (values, coeff)
    certs = lipschitz_certificate(model.body, sample)
    with torch.no_grad():
        accuracy = 1.0 - classification_error(model.logits, *test)
    contractive = all(c.is_contractive for c in certs)
    metrics.update(
        {
            f"{key}_test_accuracy": accuracy,
            f"{key}_max_norm": max(values),
            f"{key}_layers_above_one": int(sum(v > 1.0 for v in values)),
            f"{key}_max_block_bound": max(c.bound for c in certs),
        }
    )
    row = {
        "model": name,
        "test accuracy": accuracy,
        "max sigma": max(values),
        "min sigma": min(values),
        "layers with sigma > 1": int(sum(v > 1.0 for v in values)),
        "max block Lip bound": max(c.bound for c in certs),
        "all blocks contractive": contractive,
    }
    return metrics, row, contractive


def _violation(
    study: StudyRun, model: ResidualClassifier, config: Config, sample: Tensor
) -> dict[str, Any]:
    """Plant an unconstrained layer in ``model``; whether the certificate flags it."""
    bad, bad_name, bad_norm = _violating_copy(model, config.violating_bound, sample)
    certs = lipschitz_certificate(bad.body, sample)
    # Flagged = the certificate lists the layer above c and calls its block non-contractive.
    listed = [
        layer.lipschitz
        for cert in certs
        for layer in cert.layers
        if f"{cert.block}.g.{layer.name}" == bad_name
    ]
    flagged = (
        bool(listed)
        and listed[0] > model.coeff * (1 + config.tolerance)  # type: ignore[operator]
        and not all(c.is_contractive for c in certs)
    )
    study.table(
        [{"block": c.block, "Lip bound": c.bound, "contractive": c.is_contractive} for c in certs],
        title=f"Certificate of the violating model (plain convolution at {bad_name})",
    )
    return {
        "violating_layer_flagged": flagged,
        "violating_block_bound": max(c.bound for c in certs),
        "violating_layer_norm": bad_norm,
    }


def _check_targets(study: StudyRun, config: Config, metrics: dict[str, Any]) -> None:
    worst = metrics["max_norm_over_coeff"]
    all_certified = metrics["normalised_all_certified"]
    study.check(
        "normalised_norms",
        f"{worst:.6f}",
        f"max sigma / c <= 1 + {config.tolerance:g} after convergence",
        met=worst <= 1 + config.tolerance,
    )
    study.check(
        "normalised_certified",
        all_certified,
        "lipschitz_certificate: every block contractive",
        met=all_certified,
    )
    study.check(
        "violating_layer_flagged",
        metrics["violating_layer_flagged"],
        f"an unconstrained conv (block bound {config.violating_bound}) is reported above c and "
        "its block non-contractive",
        met=metrics["violating_layer_flagged"],
    )


@study_entry(
    "iresnet-singular-values",
    title="iresnet-singular-values: exact operator norms (thesis figure 4.2)",
    check=check_coeffs,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train, measure every convolution exactly, certify, and write the run directory."""
    study.text(
        f"A vanilla ResNet and i-ResNets with c in {list(config.coeffs)} "
        f"({config.model.n_blocks} blocks, 3-1-3 convolutions) trained for "
        f"{config.train.epochs} epoch(s) on {config.dataset}. Every convolution's largest "
        "singular value is computed exactly on the input size it sees; the i-ResNets are "
        "shown as trained and after converging their power iteration."
    )
    train, test = study.load_data(config.dataset, n_train=None, n_test=config.n_test)
    sample = test[0][:1]
    norms: dict[str, tuple[list[float], float | None]] = {}
    rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {"dataset": config.dataset}
    ratios: list[float] = []
    all_certified = True
    settings = [("vanilla", None), *[(f"c={c}", c) for c in config.coeffs]]
    for index, (name, coeff) in enumerate(settings):
        study.seed(index)
        recipe = replace(config.train, seed=config.seed + index, device=str(study.device))
        model = trained_classifier(
            train, recipe, coeff=coeff, progress=config.progress, **asdict(config.model)
        )
        found, row, contractive = _measure(model, name, coeff, sample, test, norms)
        save_checkpoint(study.checkpoint_path(_key(name)), model=model)
        metrics.update(found)
        rows.append(row)
        if coeff is not None:
            ratios.append(found[f"{_key(name)}_max_norm"] / coeff)
            all_certified &= contractive
    study.figure(
        _figure(norms),
        "singular_values",
        "Exact largest singular value of every convolution of the residual branches, one bar "
        "per model and layer (normalised models as trained and after converging the power "
        "iteration); dashed: each converged model's c, solid: 1.",
    )
    study.table(rows, title="Models")
    metrics.update(_violation(study, model, config, sample))
    worst = max(ratios)
    metrics.update(max_norm_over_coeff=worst, normalised_all_certified=all_certified)
    _check_targets(study, config, metrics)
    return study.finish(metrics)
