r"""``preimage run spheres``: excessive invariance on Adversarial Spheres (figure 4, appendix A).

Part 1 (section 2.1, figure 4, appendix D.1). A fully connected fi-RevNet (4 additive RevNet
blocks, no batch norm, Adam with learning rate :math:`10^{-4}`) learns to tell the sphere of
radius :math:`R_1 = 1` from that of radius :math:`R_2 = 10` in :math:`d = 100` dimensions. A
nuisance classifier (3-layer ReLU MLP, 1000 units) is then trained post hoc on its frozen
:math:`z_n`. Both decision functions are drawn on two planes: through two random data points,
and through an inner point :math:`x` and its metamer
:math:`x_{met} = F^{-1}(z_s(x), z_n(x_{outer}))`. Metamers of inner points with the nuisance of
outer points are invariance-based adversarial examples when the model keeps deciding "inner"
while the radius oracle says "outer"; their success rate is measured for the CE-trained model
and for a model trained with the independence cross-entropy (iCE).

Part 2 (appendix A example 8, thesis example 6.6 and figure 6.3). The mis-aligned max-margin
classifier that ignores :math:`n = 10` of :math:`d = 500` coordinates (:math:`R_2 = 1.3`) is
nearly perfect on test data, yet the analytic perturbation-based attack breaks it on the outer
sphere and the invariance-based attack on the inner sphere; accuracy-vs-:math:`\ell_2`-budget
curves of both are plotted.

Deviations, and why: the ``cpu`` budget trains on 100k points for 4 epochs instead of 500k for
10 (a short run of 40k points for 2 epochs already reached 100% holdout accuracy); the paper
fixes no batch size, we use 128. The mis-aligned classifier is fitted on 50k (``cpu``) instead
of 10M points, which only moves the bias :math:`b` inside the margin; even the ``paper`` budget
attacks 100k test points rather than 2M (the curves are empirical survival functions, which 100k
points pin down to a few tenths of a percent, and 2M points of dimension 500 would not fit in
memory at once). The paper trains no iCE
model on spheres; we add one as the comparison the invariance success rate asks for, and give it
affine couplings (``ice_coupling="affine"``) where the CE model keeps appendix D.1's additive
ones: an additive fi-RevNet preserves volume, so its class-conditional entropies are those of
the data, :math:`h(x \mid \text{outer}) - h(x \mid \text{inner}) = (d-1)\ln(R_2/R_1)`
(228 nats), and :math:`z_n \perp y` would force that whole difference into the two logits.
Measured at the ``cpu`` budget (BENCHMARKS.md): additive iCE 100% invariance success (as CE),
affine iCE 98.65%.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 ("Attack on adversarial spheres"), figure 4, appendix A and
    appendix D.1. Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.2.1,
    example 6.6, figure 6.3. Gilmer et al. (2018), *Adversarial Spheres*.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.patches import Circle
from torch import Tensor

from preimage.analysis.invariance import (
    classification_error,
    decision_plane_grid,
    train_nuisance_classifier,
)
from preimage.attacks import RadiusOracle, invariance_success, metameric_sample
from preimage.attacks.spheres import (
    MisalignedSpheresClassifier,
    SpheresInvarianceAttack,
    SpheresPerturbationAttack,
    accuracy_under_attack,
)
from preimage.data import sample_spheres
from preimage.losses import IndependenceCrossEntropy
from preimage.models import FiRevNet
from preimage.report import Report, plots
from preimage.runs import RunDir
from preimage.studies._invariance_common import (
    Target,
    add_figure,
    finish_report,
    target_metrics,
)
from preimage.studies.base import StudyConfig
from preimage.train import TrainConfig, Trainer, resolve_device, save_checkpoint

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the spheres study (defaults: the ``cpu`` budget).

    Attributes:
        dim: sphere dimension :math:`d` (paper: 100).
        r1: inner radius (paper: 1).
        r2: outer radius (paper: 10).
        n_train: training points (paper: 500k).
        n_test: holdout points (paper: 100k).
        epochs: training epochs (paper: 10).
        batch_size: mini-batch size.
        lr: Adam learning rate (paper: 1e-4).
        hidden: units of the coupling MLPs.
        nuisance_hidden: units of the nuisance classifiers (paper: 1000).
        nuisance_epochs: epochs of the post-hoc nuisance classifier.
        ice_coupling: coupling of the iCE model, ``"affine"`` (default, see the module notes)
            or ``"additive"`` (as the CE model, appendix D.1).
        ice_adversary: the network's nuisance term in iCE, ``"nce"`` (paper) or ``"uniform"``
            (see :class:`~preimage.losses.IndependenceCrossEntropy`).
        n_metamers: metamer pairs (inner logits, outer nuisance) to attack with.
        resolution: grid points per axis of the decision planes.
        mis_dim: dimension of the mis-aligned classifier experiment (thesis: 500).
        mis_unused: coordinates the mis-aligned classifier ignores (thesis: 10).
        mis_r2: outer radius there (thesis: 1.3).
        mis_n_train: points to fit the max-margin bias on (appendix A: 10M).
        mis_n_test: points to attack.
    """

    dim: int = 100
    r1: float = 1.0
    r2: float = 10.0
    n_train: int = 100_000
    n_test: int = 50_000
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-4
    hidden: int = 256
    nuisance_hidden: int = 1000
    nuisance_epochs: int = 5
    ice_coupling: str = "affine"
    ice_adversary: str = "nce"
    n_metamers: int = 2000
    resolution: int = 201
    mis_dim: int = 500
    mis_unused: int = 10
    mis_r2: float = 1.3
    mis_n_train: int = 50_000
    mis_n_test: int = 10_000

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "n_train": 3000,
            "n_test": 1000,
            "epochs": 2,
            "hidden": 32,
            "nuisance_hidden": 64,
            "nuisance_epochs": 3,
            "n_metamers": 200,
            "resolution": 41,
            "mis_n_train": 2000,
            "mis_n_test": 1000,
        },
        "cpu": {},
        "paper": {
            "n_train": 500_000,
            "n_test": 100_000,
            "epochs": 10,
            "nuisance_epochs": 10,
            "n_metamers": 10_000,
            "mis_n_train": 10_000_000,
            "mis_n_test": 100_000,
        },
    }


def _train_model(
    config: Config, objective: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
) -> tuple[FiRevNet, list[dict[str, Any]]]:
    torch.manual_seed(config.seed)
    model = FiRevNet(
        (config.dim,),
        2,
        stages=1,
        blocks_per_stage=4,
        hidden=config.hidden,
        coupling=config.ice_coupling if objective == "ice" else "additive",
        batch_norm=False,
    )
    cfg = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer="adam",
        lr=config.lr,
        weight_decay=0.0,
        max_shift=0,
        dequantize=False,
        seed=config.seed,
        device=config.device,
    )
    loss_fn = None
    if objective == "ice":
        loss_fn = IndependenceCrossEntropy(
            model,
            2,
            config.dim - 2,
            nuisance_hidden=config.nuisance_hidden,
            adversary=config.ice_adversary,
        )
    trainer = Trainer(model, train, test, cfg, loss_fn=loss_fn, progress=config.progress)
    trainer.fit()
    return model.eval(), trainer.history


def _prob_outer(logits_fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        return torch.softmax(logits_fn(x), dim=1)[:, 1]

    return fn


def _plane_figure(
    fn: Callable[[Tensor], Tensor],
    a: Tensor,
    b: Tensor,
    names: tuple[str, str],
    title: str,
    resolution: int,
    radii: tuple[float, float],
) -> Any:
    # Wide enough for both circles: a plane through two inner points would otherwise hide
    # the outer sphere, and with it the contrast figure 4 is about.
    extent = 1.25 * max(float(a.norm()), float(b.norm()), max(radii))
    grid = decision_plane_grid(fn, a, b, resolution=resolution, extent=extent)
    fig = plots.decision_plane(
        grid.u.cpu(),
        grid.v.cpu(),
        grid.values.cpu(),
        points={names[0]: grid.coords_a, names[1]: grid.coords_b},
        title=title,
        xlabel="coordinate along e1",
        ylabel="coordinate along e2",
        value_label="p(outer sphere)",
    )
    # The plane passes through the origin, so it cuts both spheres in circles of their radii.
    for radius in radii:
        fig.axes[0].add_patch(Circle((0.0, 0.0), radius, fill=False, ls="--", color="k", lw=0.8))
    return fig


def _fit_misaligned(config: Config) -> MisalignedSpheresClassifier:
    # Chunked, so that the paper's 10M points never sit in memory at once.
    low, high = -np.inf, np.inf
    used = config.mis_dim - config.mis_unused
    chunk = 100_000
    for i, start in enumerate(range(0, config.mis_n_train, chunk)):
        n = min(chunk, config.mis_n_train - start)
        x, y = sample_spheres(
            n, d=config.mis_dim, r1=config.r1, r2=config.mis_r2, seed=10 * config.seed + 1000 + i
        )
        norms = x[:, :used].norm(dim=1)
        if bool((y == 0).any()):
            low = max(low, float(norms[y == 0].max()))
        if bool((y == 1).any()):
            high = min(high, float(norms[y == 1].min()))
    return MisalignedSpheresClassifier(config.mis_dim, config.mis_unused, low + 0.5 * (high - low))


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the spheres study into ``out_dir`` and return its metrics.

    Example:
        >>> cfg = Config.for_budget("smoke", progress=False)
        >>> cfg.n_train, cfg.dim, cfg.mis_dim
        (3000, 100, 500)
    """
    run_dir = RunDir(out_dir)
    run_dir.write_config(asdict(config), argv=argv, seed=config.seed, command="run spheres")
    device = resolve_device(config.device)
    x_train, y_train = sample_spheres(
        config.n_train, d=config.dim, r1=config.r1, r2=config.r2, seed=2 * config.seed
    )
    x_test, y_test = sample_spheres(
        config.n_test, d=config.dim, r1=config.r1, r2=config.r2, seed=2 * config.seed + 1
    )
    oracle = RadiusOracle(config.r1, config.r2)
    report = Report("Excessive invariance on Adversarial Spheres")
    report.add_text(
        f"A fully connected fi-RevNet (4 additive blocks, no batch norm, Adam lr {config.lr}) "
        f"separates the spheres of radius {config.r1} and {config.r2} in d = {config.dim} "
        f"dimensions ({config.n_train} training points, {config.epochs} epochs). Metameric "
        "samples x_met = F^-1(z_s(x_inner), z_n(x_outer)) keep the logits of an inner point and "
        "take the nuisance of an outer one; they are invariance-based adversarial examples when "
        "the model still says 'inner' but the radius oracle says 'outer'."
    )

    metrics: dict[str, Any] = {}
    models: dict[str, FiRevNet] = {}
    for objective in ("ce", "ice"):
        model, history = _train_model(config, objective, (x_train, y_train), (x_test, y_test))
        models[objective] = model
        save_checkpoint(
            run_dir.checkpoint_path(objective),
            model=model,
            state={"objective": objective, "model_config": model.config, "history": history},
        )
        xt = x_test.to(device)
        metrics[f"{objective}_holdout_accuracy"] = 1.0 - classification_error(
            model.logits, xt, y_test.to(device)
        )
        metrics[f"{objective}_train_accuracy"] = float(
            history[-1].get("train_accuracy", history[-1].get("train_acc", np.nan))
        )
        fig = plots.training_curves(history)
        add_figure(
            report, run_dir, fig, f"training_{objective}", f"{objective.upper()} training curves."
        )

    # Metameric samples: logits of inner points, nuisance of outer points.
    inner, outer = x_test[y_test == 0], x_test[y_test == 1]
    n_met = min(config.n_metamers, inner.shape[0], outer.shape[0])
    x_sem, x_nui = inner[:n_met].to(device), outer[:n_met].to(device)
    for objective, model in models.items():
        x_met = metameric_sample(model, x_sem, x_nui)
        success = invariance_success(model, oracle, x_sem, x_met)
        metrics[f"{objective}_metamer_invariance_success"] = float(success.float().mean())
        metrics[f"{objective}_metamer_mean_norm"] = float(x_met.norm(dim=1).mean())

    ce = models["ce"]
    nuisance = train_nuisance_classifier(
        ce,
        (x_train, y_train),
        (x_test, y_test),
        hidden=config.nuisance_hidden,
        depth=3,
        epochs=config.nuisance_epochs,
        seed=config.seed,
    )
    metrics["ce_nuisance_holdout_accuracy"] = 1.0 - nuisance.test_error
    x_met0 = metameric_sample(ce, x_sem[:1], x_nui[:1])
    metrics["ce_nuisance_accuracy_on_metamers"] = 1.0 - classification_error(
        lambda x: nuisance.logits(ce, x),
        metameric_sample(ce, x_sem, x_nui),
        torch.ones(n_met, dtype=torch.long, device=device),
    )
    report.add_heading("Metameric samples")
    report.add_table(
        [
            {
                "model": objective.upper(),
                "holdout accuracy": metrics[f"{objective}_holdout_accuracy"],
                "metamer invariance success": metrics[f"{objective}_metamer_invariance_success"],
                "mean metamer norm": metrics[f"{objective}_metamer_mean_norm"],
            }
            for objective in models
        ],
        title=f"{n_met} metamers F^-1(z_s(inner), z_n(outer))",
    )
    report.add_text(
        "Success = the model still decides 'inner' while the radius oracle says 'outer'. "
        "The post-hoc nuisance classifier on z_n of the CE model labels "
        f"{100 * metrics['ce_nuisance_accuracy_on_metamers']:.1f}% of the metamers 'outer': "
        "the information the logits ignore is there. The iCE model here has "
        f"{config.ice_coupling} couplings; the default is affine because additive couplings "
        "preserve volume, so the class-conditional differential entropies of z equal those of "
        "x, h(x | outer) - h(x | inner) = (d - 1) ln(R2 / R1) (228 nats for d = 100, "
        "R2/R1 = 10). If z_n were independent of the class, h(z | y) = h(z_n) + h(z_s | z_n, y) "
        "and all of that difference would have to sit in the C = 2 logits: a spread ratio of "
        "about e^114 per logit. Affine couplings lift this bound. The paper reports no iCE "
        "result on spheres."
    )

    report.add_heading("Decision planes (figure 4)")
    logit_fn = _prob_outer(lambda x: ce.logits(x.to(device)))
    nuis_fn = _prob_outer(lambda x: nuisance.logits(ce, x.to(device)))
    x1, x2 = x_test[0].to(device), x_test[1].to(device)
    planes = [
        ("plane_random_logits", logit_fn, x1, x2, ("x1", "x2"),
         "logit classifier D, plane (x1, x2)"),
        ("plane_random_nuisance", nuis_fn, x1, x2, ("x1", "x2"),
         "nuisance classifier, plane (x1, x2)"),
        ("plane_metamer_logits", logit_fn, x_sem[0], x_met0[0], ("x", "x_met"),
         "logit classifier D, plane (x, x_met)"),
        ("plane_metamer_nuisance", nuis_fn, x_sem[0], x_met0[0], ("x", "x_met"),
         "nuisance classifier, plane (x, x_met)"),
    ]  # fmt: skip
    for name, fn, a, b, names, title in planes:
        with torch.no_grad():
            fig = _plane_figure(fn, a, b, names, title, config.resolution, (config.r1, config.r2))
        add_figure(
            report,
            run_dir,
            fig,
            name,
            f"{title}: p(outer) over the plane through the origin spanned by the two points; "
            f"dashed: the spheres' circles of radius {config.r1} and {config.r2}.",
        )

    report.add_heading("Mis-aligned classifier (appendix A, thesis figure 6.3)")
    clf = _fit_misaligned(config).to(device)
    xm, ym = sample_spheres(
        config.mis_n_test,
        d=config.mis_dim,
        r1=config.r1,
        r2=config.mis_r2,
        seed=10 * config.seed + 7,
        dtype=torch.float64,
    )
    xm, ym = xm.to(device), ym.to(device)
    correct = clf(xm).argmax(1) == ym
    metrics["misaligned_clean_accuracy"] = float(correct.float().mean())
    budgets = torch.linspace(0.0, 1.2 * config.mis_r2, 49, dtype=torch.float64)
    curves: dict[str, np.ndarray] = {}
    for label, attack, sphere in (
        ("perturbation attack (outer sphere)", SpheresPerturbationAttack, 1),
        ("invariance attack (inner sphere)", SpheresInvarianceAttack, 0),
    ):
        pts = ym == sphere
        result = attack(r1=config.r1, r2=config.mis_r2)(clf, xm[pts])
        acc = accuracy_under_attack(correct[pts], result, budgets).cpu().numpy()
        curves[label] = acc
        key = "perturbation" if sphere == 1 else "invariance"
        metrics[f"misaligned_{key}_success"] = result.success_rate
        metrics[f"misaligned_{key}_median_l2"] = float(result.distance.median())
        metrics[f"misaligned_{key}_accuracy_at_max_budget"] = float(acc[-1])
    np.savez(
        run_dir.path / "misaligned_curves.npz",
        budgets=budgets.numpy(),
        **{k.split()[0]: v for k, v in curves.items()},
    )
    fig = plots.line_plot(
        budgets.numpy(),
        curves,
        xlabel="l2 budget of the attack",
        ylabel="accuracy on the attacked sphere",
        title=f"mis-aligned classifier, d={config.mis_dim}, n={config.mis_unused} unused",
    )
    add_figure(
        report,
        run_dir,
        fig,
        "misaligned_attacks",
        "Accuracy vs l2 budget: the perturbation attack breaks outer points, the invariance "
        "attack inner points; each alone misses the other failure (thesis figure 6.3).",
    )

    targets = [
        Target(
            "ce_holdout_accuracy", metrics["ce_holdout_accuracy"], ">= 0.999",
            metrics["ce_holdout_accuracy"] >= 0.999,
        ),
        Target(
            "ce_metamer_invariance_success", metrics["ce_metamer_invariance_success"], ">= 0.5",
            metrics["ce_metamer_invariance_success"] >= 0.5,
        ),
        Target(
            "ice_metamer_invariance_success", metrics["ice_metamer_invariance_success"],
            "< CE rate",
            metrics["ice_metamer_invariance_success"] < metrics["ce_metamer_invariance_success"],
        ),
        Target(
            "misaligned_clean_accuracy", metrics["misaligned_clean_accuracy"], ">= 0.99",
            metrics["misaligned_clean_accuracy"] >= 0.99,
        ),
    ]  # fmt: skip
    metrics.update(target_metrics(targets))
    run_dir.write_metrics(metrics)
    finish_report(report, run_dir, "spheres: targets", metrics, targets, asdict(config))
    return metrics
