r"""``preimage run toy-density``: i-ResNet vs coupling flow on 2-D densities (figure 5.2).

Both models are trained by maximum likelihood,
:math:`\log p(x) = \log\mathcal N(F(x); 0, I) + \log|\det J_F(x)|`, on samples of the 2-D toy
densities of :mod:`preimage.data.toy2d`:

* an i-ResNet: residual blocks :math:`x + g(x)` with dense spectrally normalised branches; in
  2-D the log-determinant is computed exactly (``logdet="exact"``), so the comparison is free
  of estimator noise;
* a coupling flow (the Glow / Real NVP family of the thesis' comparison): affine couplings with
  MLP sub-networks, alternating which coordinate is transformed.

Both are trained with :class:`~preimage.train.Trainer` (its ``loss_fn`` hook takes the negative
log-likelihood) on ``steps`` batches of fresh samples, one pass. The figure shows the data, each
model's density as a heat map and samples
:math:`x = F^{-1}(z)`, :math:`z \sim \mathcal N(0, I)` (the i-ResNet inverted by fixed-point
iteration); the metrics are the test negative log-likelihoods in nats.

Deviation from the thesis: Glow's 1x1 convolutions are trivial in 2-D, so the coupling flow is
a stack of affine couplings with alternating halves; the i-ResNet uses exact log-determinants
(possible in 2-D) rather than the power-series estimator.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, figure 5.2, section 5.1 (eq. 5.4)
    and section 5.4. Behrmann et al. (2019), *Invertible Residual Networks*, section 5 (toy
    densities). Dinh et al. (2017), *Density estimation using Real NVP* (affine couplings).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from preimage.data.toy2d import TOY2D, sample_toy2d
from preimage.errors import ConfigError
from preimage.nn.base import InvertibleModule, InvertibleSequential
from preimage.nn.coupling import AffineCoupling
from preimage.nn.iresblock import IResBlock, dense_branch
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.studies.residual_parts import adam_recipe, converge_spectral
from preimage.train import TrainConfig, Trainer
from preimage.train.checkpoint import save_checkpoint

__all__ = ["Config", "coupling_flow", "iresnet_flow", "log_density", "nll_loss", "run"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the toy-density study (defaults: the ``cpu`` budget).

    Attributes:
        datasets: names from :data:`preimage.data.toy2d.TOY2D`.
        n_blocks: residual blocks of the i-ResNet.
        hidden: width of the i-ResNet branches and of the coupling sub-networks.
        coeff: spectral coefficient of the i-ResNet layers.
        n_couplings: affine couplings of the coupling flow.
        steps: training batches; the training set is ``steps x train.batch_size`` fresh
            samples, so one epoch sees every sample once.
        train: training of every model (:class:`~preimage.train.TrainConfig`: Adam, constant
            learning rate, no augmentation; its ``seed`` and ``device`` follow the study's).
        n_test: test points for the negative log-likelihood.
        n_samples: samples drawn from each model for the figure.
        grid: resolution of the density heat maps.
        extent: half width of the plotted square.
    """

    datasets: tuple[str, ...] = ("8gaussians", "checkerboard", "moons")
    n_blocks: int = 10
    hidden: int = 64
    coeff: float = 0.9
    n_couplings: int = 8
    steps: int = 2000
    train: TrainConfig = field(
        default_factory=lambda: adam_recipe(epochs=1, batch_size=256, lr=2e-3)
    )
    n_test: int = 5000
    n_samples: int = 2000
    grid: int = 80
    extent: float = 4.0

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "datasets": ("8gaussians",),
            "n_blocks": 3,
            "hidden": 32,
            "n_couplings": 4,
            "steps": 60,
            "train.batch_size": 128,
            "n_test": 500,
            "n_samples": 300,
            "grid": 30,
        },
        "cpu": {},
        "paper": {
            "datasets": tuple(TOY2D),
            "n_blocks": 100,
            "hidden": 128,
            "n_couplings": 32,
            "steps": 50_000,
            "train.batch_size": 500,
            "n_test": 50_000,
        },
    }


def iresnet_flow(n_blocks: int, hidden: int, coeff: float) -> InvertibleSequential:
    r"""A 2-D i-ResNet flow: ``n_blocks`` blocks with 3-layer ELU branches, exact log-det.

    Example:
        >>> flow = iresnet_flow(2, 8, 0.9)
        >>> z, logdet = flow(torch.randn(5, 2))
        >>> z.shape, logdet.shape
        (torch.Size([5, 2]), torch.Size([5]))
    """
    return InvertibleSequential(
        *[IResBlock(dense_branch(2, hidden, coeff=coeff), logdet="exact") for _ in range(n_blocks)]
    )


def coupling_flow(n_couplings: int, hidden: int) -> InvertibleSequential:
    r"""A 2-D coupling flow: affine couplings with MLP sub-networks, alternating halves.

    Example:
        >>> flow = coupling_flow(2, 8)
        >>> x = torch.randn(5, 2)
        >>> z, _ = flow(x)
        >>> bool(torch.allclose(flow.inverse(z), x, atol=1e-6))
        True
    """
    return InvertibleSequential(
        *[
            AffineCoupling(2, subnet="mlp", hidden=hidden, swap=i % 2 == 1)
            for i in range(n_couplings)
        ]
    )


def log_density(flow: InvertibleModule, x: Tensor) -> Tensor:
    r""":math:`\log p(x) = \log\mathcal N(F(x); 0, I) + \log|\det J_F(x)|` per sample.

    Example:
        >>> flow = coupling_flow(2, 8)  # the identity at initialisation
        >>> value = float(log_density(flow, torch.zeros(1, 2)).detach())
        >>> abs(value + math.log(2 * math.pi)) < 1e-6
        True
    """
    z, logdet = flow(x)
    dim = z.flatten(1).shape[1]
    return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * dim * _LOG_2PI + logdet


def _batched_log_density(flow: InvertibleModule, x: Tensor, batch: int = 2048) -> Tensor:
    with torch.no_grad():
        return torch.cat([log_density(flow, x[i : i + batch]) for i in range(0, len(x), batch)])


def _figure(
    panels: list[tuple[str, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]],
    extent: float,
) -> Figure:
    names = list(panels[0][2])
    n_cols = 1 + 2 * len(names)
    fig = Figure(figsize=(2.4 * n_cols, 2.4 * len(panels)))
    axes = np.atleast_2d(fig.subplots(len(panels), n_cols))
    box = (-extent, extent, -extent, extent)
    for row, (dataset, data, densities, samples) in zip(axes, panels, strict=True):
        row[0].scatter(data[:, 0], data[:, 1], s=1, alpha=0.5)
        row[0].set_title(f"{dataset}: data", fontsize=9)
        for j, name in enumerate(names):
            row[1 + 2 * j].imshow(densities[name], origin="lower", extent=box, cmap="magma")
            row[1 + 2 * j].set_title(f"{name} density", fontsize=9)
            s = samples[name]
            row[2 + 2 * j].scatter(s[:, 0], s[:, 1], s=1, alpha=0.5, color="C1")
            row[2 + 2 * j].set_title(f"{name} samples", fontsize=9)
        for ax in row:
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def nll_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Trainer objective: mean negative log-likelihood of ``x`` in nats (labels unused).

    Example:
        >>> loss, logs = nll_loss(coupling_flow(2, 8), torch.zeros(3, 2), torch.zeros(3))
        >>> round(float(loss.detach()), 4) == round(math.log(2 * math.pi), 4), sorted(logs)
        (True, ['nll'])
    """
    nll = -log_density(model, x).mean()  # type: ignore[arg-type]
    return nll, {"nll": float(nll.detach())}


def _models(config: Config) -> dict[str, Callable[[], InvertibleSequential]]:
    """Model name -> builder, in the order of the figure's columns."""
    return {
        "i-ResNet": lambda: iresnet_flow(config.n_blocks, config.hidden, config.coeff),
        "coupling": lambda: coupling_flow(config.n_couplings, config.hidden),
    }


def _fit(
    study: StudyRun,
    config: Config,
    flow: InvertibleSequential,
    train: Tensor,
    test: Tensor,
    seed: int,
) -> dict[str, Any]:
    """Train ``flow`` by maximum likelihood; its NLLs before and after (nats)."""
    initial = float(-_batched_log_density(flow.eval(), test).mean())
    recipe = replace(config.train, seed=seed, device=str(study.device))
    labels = torch.zeros(train.shape[0], dtype=torch.long, device=train.device)
    trainer = Trainer(
        flow, (train, labels), None, recipe, loss_fn=nll_loss, progress=config.progress
    )
    final = trainer.fit()
    converge_spectral(flow)
    flow.eval()
    nll = float(-_batched_log_density(flow, test).mean())
    return {"test_nll": nll, "initial_nll": initial, "train_nll": float(final["train_loss"])}


def _check(config: Config) -> None:
    unknown = [d for d in config.datasets if d not in TOY2D]
    if unknown or not config.datasets:
        raise ConfigError(f"unknown toy datasets {unknown}; choose from {', '.join(TOY2D)}")


@study_entry(
    "toy-density",
    title="toy-density: i-ResNet vs coupling flow in 2-D (thesis figure 5.2)",
    check=_check,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train both flows on every dataset and write the run directory; returns the metrics."""
    study.text(
        f"i-ResNet ({config.n_blocks} blocks, width {config.hidden}, c = {config.coeff}, "
        f"exact log-det) vs coupling flow ({config.n_couplings} affine couplings, width "
        f"{config.hidden}), {config.steps} Adam steps of {config.train.batch_size} fresh "
        f"samples on {', '.join(config.datasets)}. Test NLL in nats on {config.n_test} "
        "held-out points (lower is better)."
    )
    device = study.device
    axis = torch.linspace(-config.extent, config.extent, config.grid, device=device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid_points = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    cell = (2 * config.extent / (config.grid - 1)) ** 2
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    panels = []
    for d_index, dataset in enumerate(config.datasets):
        seed = config.seed + 1000 * d_index
        n_train = config.steps * config.train.batch_size
        train = sample_toy2d(dataset, n_train, seed=seed, device=device)
        test = sample_toy2d(dataset, config.n_test, seed=seed + 1, device=device)
        densities: dict[str, np.ndarray] = {}
        samples: dict[str, np.ndarray] = {}
        for name, build in _models(config).items():
            torch.manual_seed(seed)
            flow = build().to(device)
            found = _fit(study, config, flow, train, test, seed)
            density = _batched_log_density(flow, grid_points).exp()
            found["grid_mass"] = float(density.sum()) * cell
            z = torch.randn(config.n_samples, 2, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                samples[name] = flow.inverse(z.to(device)).cpu().numpy()
            densities[name] = density.reshape(config.grid, config.grid).cpu().numpy()
            key = f"{dataset}_{'iresnet' if name == 'i-ResNet' else 'coupling'}"
            save_checkpoint(study.checkpoint_path(key), model=flow)
            metrics.update(
                {f"{key}_{k}": found[k] for k in ("test_nll", "initial_nll", "grid_mass")}
            )
            rows.append(_row(dataset, name, found))
        panels.append((dataset, test[: config.n_samples].cpu().numpy(), densities, samples))
    _report(study, config, panels, rows, metrics)
    return study.finish(metrics)


def _row(dataset: str, name: str, found: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "model": name,
        "test NLL (nats)": found["test_nll"],
        "NLL at init": found["initial_nll"],
        "mean train NLL (nats)": found["train_nll"],
        "density mass on plotted square": found["grid_mass"],
    }


def _report(
    study: StudyRun,
    config: Config,
    panels: list[tuple[str, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]],
    rows: list[dict[str, Any]],
    metrics: dict[str, Any],
) -> None:
    """Figure, table and targets (NLL below its initial value, all NLLs finite)."""
    study.figure(
        _figure(panels, config.extent),
        "densities",
        f"One row per dataset: {min(config.n_samples, config.n_test)} test points, then for "
        f"each model its density on [-{config.extent:g}, {config.extent:g}]^2 as a heat map and "
        f"{config.n_samples} samples F^-1(z), z ~ N(0, I).",
    )
    study.table(rows, title="Test negative log-likelihood")
    improved = all(r["test NLL (nats)"] < r["NLL at init"] for r in rows)
    finite = all(math.isfinite(v) for k, v in metrics.items() if k.endswith("_test_nll"))
    metrics["all_finite"] = finite
    study.check(
        "nll_improves", improved, "test NLL below its value at initialisation", met=improved
    )
    study.check("finite", finite, "all test NLLs finite", met=finite)
