r"""The independence cross-entropy (iCE): train a bijective classifier to leave no label
information in its nuisance variables.

With :math:`z = F_\theta(x) = (z_s, z_n)`, logits :math:`z_s \in \mathbb{R}^C`, nuisance
:math:`z_n \in \mathbb{R}^{d-C}` and a nuisance classifier :math:`D_{\theta_{nc}}`, definition 5
and equation 6 read

.. math::

    \min_\theta \max_{\theta_{nc}}\;
    \underbrace{\mathrm{CE}(z_s, y)}_{L_{sCE}(\theta)}
    \;-\; \underbrace{\mathrm{CE}(D_{\theta_{nc}}(z_n), y)}_{L_{nCE}(\theta, \theta_{nc})}
    \;+\; L_{MLE_n}(\theta),
    \qquad
    L_{MLE_n} = -\sum_{k=1}^{d-C} \log p_k\big((z_n)_k\big) - \log\lvert\det J_{F_\theta}(x)\rvert,

with :math:`p_k = \mathcal{N}(\beta_k, e^{2\gamma_k})` a learned factorial Gaussian (mean
:math:`\beta_k`, log-scale :math:`\gamma_k`). The minimisation lowers a variational lower bound
on :math:`I(y; z_n)` and the maximisation tightens it (lemma 10); together with
:math:`L_{sCE}`, the MLE term is maximum likelihood under the factorial prior
:math:`p(z_s, z_n) = p(z_s) \prod_k p_k((z_n)_k)`, which makes :math:`z_s` and :math:`z_n`
independent (lemma 11).

Minimax scheme (alternating, one inner step per batch by default), shaped as the trainer's
``loss_fn(model, x, y) -> (loss, metrics)`` hook:

1. forward: :math:`z, \log\lvert\det J\rvert = F_\theta(x)`, split into :math:`z_s, z_n`;
2. *max step* (inside the call, only when the model is in training mode and gradients are
   enabled): on :math:`z_n` **detached**, one Adam step of the nuisance classifier on its own
   cross-entropy :math:`L_{nCE}` (minimising it maximises the likelihood the classifier assigns
   to the true labels, which is the maximisation of the iCE over :math:`\theta_{nc}`), and one
   step of :math:`\beta, \gamma` on the Gaussian negative log-likelihood of :math:`z_n`;
3. *min objective* (returned): :math:`L_{sCE} - w_{nCE} L_{nCE} + w_{MLE} L_{MLE_n}/d` with
   the nuisance classifier and :math:`\beta, \gamma` **detached** (evaluated through
   ``torch.func.functional_call`` on detached parameters), so the trainer's ``backward`` gives
   the network the :math:`-L_{nCE}` gradient through :math:`z_n` and nothing to the auxiliary
   parameters; the trainer then steps the network.

Deviations from the papers, and why:

- **Normalisation of** :math:`L_{nCE}` (appendix D.2: "we normalize :math:`L_{nCE}` by the
  number of input dimensions it receives for the maximization step"). Read as: in the max step
  only, the nuisance classifier's batch-mean cross-entropy is multiplied by
  :math:`1/(d - C)`, the number of inputs of the nuisance classifier
  (``normalize_by_dim=True``); the min objective keeps :math:`L_{nCE}` unnormalised, weighted by
  ``nce_weight``. Adam is invariant to a constant loss factor up to its :math:`\epsilon`, so with
  the default optimiser this chiefly changes the scale of the reported max-step loss; pass
  ``nce_weight=1/(d-C)`` to normalise the network's signal instead.
- **Log-determinant counted once and per dimension.** Equation 6 writes
  :math:`\log(p_k(\cdot)\lvert\det J\rvert)` inside the sum over :math:`k`, which taken
  literally adds the log-determinant :math:`d - C` times; the change-of-variables formula has it
  once. The MLE term is divided by :math:`d` (nats per input dimension, the convention of flow
  models) so that it is on the scale of the two cross-entropies.
- Batch means replace the sums over the training set of the thesis (definition 6.14), the
  usual stochastic estimate up to the constant factor :math:`1/N`.
- **Optional non-saturating adversary** (``adversary="uniform"``; the default ``"nce"`` is
  the paper's :math:`-L_{nCE}`). The gradient of :math:`-\mathrm{CE}(D(z_n), y)` with respect
  to the classifier's logits is :math:`\mathrm{onehot}(y) - D(z_n)`, which vanishes once the
  nuisance classifier is confident and right: on Adversarial Spheres we measured exactly that
  (the inner classifier reached near-zero cross-entropy early and the network stopped hiding
  the radius from :math:`z_n`). ``"uniform"`` replaces :math:`-L_{nCE}` in the min objective by
  the cross-entropy of :math:`D(z_n)` to the uniform label distribution,
  :math:`-\frac1C\sum_k \log D_k(z_n)`, whose logit gradient :math:`D(z_n) - 1/C` is largest
  exactly when the classifier is confident. Its minimum (:math:`D` uniform on every
  :math:`z_n`) is where the Bayes-optimal nuisance classifier sees no label information, the
  same fixed point as the paper's game; unlike :math:`-L_{nCE}` it does not reward making
  :math:`z_n` *confidently wrong*, which still leaks the label. This is the "confusion" loss of
  domain-adversarial training (Tzeng et al., 2015); the max step is unchanged. What it
  did in the studies (figures in BENCHMARKS.md, "Core-paper studies"): at ``nce_weight=1`` it
  kept the MNIST fi-RevNet's logits from learning; on spheres its gradient did not vanish, yet
  the invariance success stayed above that of -L_nCE; so the paper's form stays the default.
  A short ablation of weights and inner steps (``bench/ice_ablation.py``) found no setting of
  the small ``cpu`` network that removes much label information from :math:`z_n` without
  costing logit accuracy.
- **Loopholes of the game and the options that close them** (issue 11 of this project).
  With a learned factorial Gaussian, rescaling :math:`z_n` costs the MLE term nothing (the log
  scale :math:`\gamma` cancels the scaling's log-determinant) yet drives an unnormalised ReLU
  adversary's cross-entropy up, so the network can *fool* the in-loop classifier without
  removing the label; ``adversary_input="standardized"`` feeds the classifier :math:`z_n`
  standardised with the batch's (differentiable) statistics, which a rescaling cannot move.
  Equation 6 puts a density on :math:`z_n` only while the log-determinant covers all :math:`d`
  dimensions, so expanding the logit directions lowers the loss without bound;
  ``logit_prior=True`` adds :math:`\mathcal{N}(0, I)` on :math:`z_s`, the full likelihood of
  the authors' public code (which also passes the logits through a batch norm before the
  cross-entropy: ``FiRevNet(logit_norm=True)``, used here through the model's ``classify``).
  ``adversary="shuffled"`` is that code's network term, the cross-entropy of the nuisance
  classifier to the batch's labels in random order (bounded below by the entropy of the label
  marginal, reached when :math:`D(z_n)` is the marginal), usually with ``nce_weight=0.05``,
  ``max_steps=5`` and ``inner_optimizer="adamax"``. What each option did is measured in
  ``bench/ice_ablation.py`` (table in BENCHMARKS.md); :class:`~preimage.analysis.ice_game.
  IceGameMonitor` shows, per epoch, whether the in-loop classifier is beaten or fooled.
- **Defaults that differ from the paper, chosen by that ablation**: the adversary reads
  standardised :math:`z_n` (with raw inputs the in-loop classifier was fooled: far less accurate
  than a fresh probe on the same codes) and :class:`IceWarmup` trains the first epoch with
  plain cross-entropy (without it, -L_nCE kept the logits near chance). The paper's game is
  ``IceConfig(adversary_input="raw", warmup_epochs=0)``.
- :math:`\beta, \gamma` are learned in the inner step on detached :math:`z_n` (block-coordinate
  descent on the same MLE objective) rather than jointly with :math:`\theta` by the trainer's
  optimiser, so the trainer only needs the network's parameters.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 3 (definition 5, equation 6), appendix C (lemmas 10 and 11) and
    appendix D.2. Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.4.2
    (definition 6.14, equation 6.13, lemma 6.19).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError, require_int, require_non_negative
from preimage.losses.nuisance import NuisanceClassifier
from preimage.train.loop import Callback

__all__ = [
    "ADVERSARIES",
    "ADVERSARY_INPUTS",
    "INNER_OPTIMIZERS",
    "IceConfig",
    "IceWarmup",
    "IndependenceCrossEntropy",
    "gaussian_nll",
]

ADVERSARIES: tuple[str, ...] = ("nce", "uniform", "shuffled")
"""Forms of the network's nuisance term: the paper's :math:`-L_{nCE}`, the confusion loss to the
uniform distribution, or the cross-entropy to shuffled labels (the authors' public code)."""

ADVERSARY_INPUTS: tuple[str, ...] = ("raw", "standardized")
"""What the in-loop nuisance classifier sees: :math:`z_n` itself or :math:`z_n` standardised
per dimension with the batch's mean and standard deviation."""

INNER_OPTIMIZERS: tuple[str, ...] = ("adam", "adamax")
"""Optimisers of the inner (max) step."""

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(z: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    r"""Per-sample negative log-density of a factorial Gaussian.

    .. math::

        -\sum_k \log \mathcal{N}(z_k; \beta_k, e^{2\gamma_k})
        = \sum_k \Big[\gamma_k + \tfrac12 \log 2\pi
          + \tfrac12 \big((z_k - \beta_k) e^{-\gamma_k}\big)^2\Big].

    Args:
        z: ``(B, K)`` samples.
        mean: ``(K,)`` means :math:`\beta`.
        log_scale: ``(K,)`` log standard deviations :math:`\gamma`.

    Returns:
        ``(B,)`` negative log-likelihoods in nats.

    Example:
        >>> import torch
        >>> nll = gaussian_nll(torch.zeros(1, 2), torch.zeros(2), torch.zeros(2))
        >>> round(float(nll), 4)  # 2 * 0.5 * log(2 pi)
        1.8379
    """
    u = (z - mean) * torch.exp(-log_scale)
    return (log_scale + 0.5 * _LOG_2PI + 0.5 * u.pow(2)).sum(dim=1)


@dataclass(frozen=True)
class IceConfig:
    r"""The keyword arguments of :class:`IndependenceCrossEntropy` as one config value.

    A study holds it as ``ice: IceConfig`` (options ``-o ice.nce_weight=0.05``) and builds the
    loss with :meth:`IndependenceCrossEntropy.from_config`; the fields, their meaning and their
    defaults are those of the loss's constructor.

    Attributes:
        nuisance_hidden: hidden units of the nuisance classifier (paper: 512; spheres 1000).
        nuisance_depth: linear layers of the nuisance classifier (paper: 3).
        lr_nuisance: Adam learning rate of the nuisance classifier.
        lr_prior: Adam learning rate of :math:`\beta, \gamma` (``None``: ``lr_nuisance``).
        max_steps: inner steps per call (paper: alternating, i.e. 1).
        normalize_by_dim: multiply the max-step cross-entropy by :math:`1/(d-C)`.
        nce_weight: weight of :math:`-L_{nCE}` in the min objective.
        mle_weight: weight of the per-dimension MLE term in the min objective.
        adversary: ``"nce"`` (the paper's :math:`-L_{nCE}`), ``"uniform"`` or ``"shuffled"``.
        adversary_input: ``"raw"`` or ``"standardized"`` :math:`z_n` for the nuisance classifier.
        logit_prior: add the :math:`\mathcal{N}(0, I)` density of :math:`z_s` to the MLE term.
        inner_optimizer: ``"adam"`` or ``"adamax"`` (the authors' code) for the max step.
        warmup_epochs: ramp the nuisance and MLE terms in linearly over this many epochs,
            starting from plain cross-entropy in epoch 1 (:class:`IceWarmup`; default 1;
            0: none, as in the paper).

    Example:
        >>> IceConfig(nce_weight=0.05).kwargs()["nce_weight"]
        0.05
    """

    nuisance_hidden: int = 512
    nuisance_depth: int = 3
    lr_nuisance: float = 1e-3
    lr_prior: float | None = None
    max_steps: int = 1
    normalize_by_dim: bool = True
    nce_weight: float = 1.0
    mle_weight: float = 1.0
    adversary: Literal["nce", "uniform", "shuffled"] = "nce"
    adversary_input: Literal["raw", "standardized"] = "standardized"
    logit_prior: bool = False
    inner_optimizer: Literal["adam", "adamax"] = "adam"
    warmup_epochs: int = 1

    def __post_init__(self) -> None:
        # Refuse bad values when the options are read, not after a first model has trained.
        for name in ("nuisance_hidden", "nuisance_depth"):
            require_int(name, getattr(self, name))
        for name in ("max_steps", "warmup_epochs"):
            require_int(name, getattr(self, name), 0)
        for name in ("lr_nuisance", "nce_weight", "mle_weight"):
            require_non_negative(name, getattr(self, name))
        if self.lr_prior is not None:
            require_non_negative("lr_prior", self.lr_prior)
        for name, allowed in (
            ("adversary", ADVERSARIES),
            ("adversary_input", ADVERSARY_INPUTS),
            ("inner_optimizer", INNER_OPTIMIZERS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )

    def kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments of :class:`IndependenceCrossEntropy` (all but
        ``warmup_epochs``, which belongs to the training schedule: :class:`IceWarmup`)."""
        out = asdict(self)
        out.pop("warmup_epochs")
        return out


class IndependenceCrossEntropy(nn.Module):
    r"""Independence cross-entropy with its nuisance classifier and nuisance prior.

    Holds the nuisance classifier :math:`D_{\theta_{nc}}`, the prior parameters
    :math:`\beta, \gamma` and one Adam optimiser over both (:attr:`optimizer`; save its
    ``state_dict`` next to the module's to resume training). The network itself is *not* a
    submodule: the call receives it, as the trainer's ``loss_fn(model, x, y)`` hook does, and
    the network's parameters stay out of this module's ``state_dict``.

    Args:
        model: the invertible classifier to be trained (``model(x) -> (z, logdet)``,
            ``model.split(z) -> (z_s, z_n)``); only read here, to place the auxiliary parameters
            on its device and dtype and to check ``model.num_classes`` when it has one.
        num_classes: :math:`C`.
        nuisance_dim: :math:`d - C`, the size of :math:`z_n`.
        nuisance_hidden: hidden units of the nuisance classifier (paper: 512; spheres 1000).
        nuisance_depth: linear layers of the nuisance classifier (paper: 3).
        lr_nuisance: Adam learning rate of the nuisance classifier.
        lr_prior: Adam learning rate of :math:`\beta, \gamma` (default: ``lr_nuisance``).
        max_steps: inner steps per call (paper: alternating, i.e. 1).
        normalize_by_dim: multiply the max-step cross-entropy by :math:`1/(d-C)` (appendix D.2;
            see the module notes for this reading).
        nce_weight: weight of :math:`-L_{nCE}` in the min objective.
        mle_weight: weight of the per-dimension MLE term in the min objective.
        adversary: ``"nce"`` (the paper's :math:`-L_{nCE}`), ``"uniform"`` (non-saturating
            cross-entropy to the uniform label distribution) or ``"shuffled"`` (cross-entropy
            to the batch's labels in shuffled order); see the module notes.
        adversary_input: ``"standardized"`` (default: per-dimension batch standardisation of
            :math:`z_n` before the nuisance classifier, in both steps; closes the scaling
            loophole, see the module notes) or ``"raw"`` (the paper).
        logit_prior: add :math:`-\log \mathcal{N}(z_s; 0, I)` to the MLE term, so that the
            likelihood covers all :math:`d` dimensions (the authors' code).
        inner_optimizer: ``"adam"`` or ``"adamax"`` for the max step.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> ice = IndependenceCrossEntropy(model, 10, 54, nuisance_hidden=16)
        >>> x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
        >>> loss, metrics = ice(model, x, y)  # max step done; loss is the min objective
        >>> loss.backward()
        >>> all(p.grad is None for p in ice.parameters())
        True
        >>> sorted(metrics)
        ['acc', 'loss', 'mle', 'nce', 'nce_max', 'nuisance_acc', 'sce']

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        definition 5, equation 6, appendix D.2. Behrmann (thesis), *Invertibility and Domain
        Knowledge*, definition 6.14 and equation 6.13.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        nuisance_dim: int,
        *,
        nuisance_hidden: int = 512,
        nuisance_depth: int = 3,
        lr_nuisance: float = 1e-3,
        lr_prior: float | None = None,
        max_steps: int = 1,
        normalize_by_dim: bool = True,
        nce_weight: float = 1.0,
        mle_weight: float = 1.0,
        adversary: str = "nce",
        adversary_input: str = "standardized",
        logit_prior: bool = False,
        inner_optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        self.num_classes = require_int("num_classes", num_classes, 2)
        self.nuisance_dim = require_int("nuisance_dim", nuisance_dim)
        model_classes = getattr(model, "num_classes", None)
        if isinstance(model_classes, int) and model_classes != num_classes:
            raise ConfigError(f"num_classes={num_classes} but the model has {model_classes}")
        # One place checks the settings: the config they form (values and choices).
        settings = IceConfig(
            nuisance_hidden=nuisance_hidden,
            nuisance_depth=nuisance_depth,
            lr_nuisance=lr_nuisance,
            lr_prior=lr_prior,
            max_steps=max_steps,
            normalize_by_dim=normalize_by_dim,
            nce_weight=nce_weight,
            mle_weight=mle_weight,
            adversary=adversary,  # type: ignore[arg-type]
            adversary_input=adversary_input,  # type: ignore[arg-type]
            logit_prior=logit_prior,
            inner_optimizer=inner_optimizer,  # type: ignore[arg-type]
        )
        self.max_steps = settings.max_steps
        self.normalize_by_dim = bool(settings.normalize_by_dim)
        self.nce_weight = float(settings.nce_weight)
        self.mle_weight = float(settings.mle_weight)
        self.adversary = settings.adversary
        self.adversary_input = settings.adversary_input
        self.inner_optimizer = settings.inner_optimizer
        self.logit_prior = bool(settings.logit_prior)
        self.term_scale = 1.0
        lr_nuisance = float(settings.lr_nuisance)
        lr_prior = lr_nuisance if settings.lr_prior is None else float(settings.lr_prior)

        self.nuisance = NuisanceClassifier(
            nuisance_dim, num_classes, hidden=nuisance_hidden, depth=nuisance_depth
        )
        self.beta = nn.Parameter(torch.zeros(nuisance_dim))
        self.gamma = nn.Parameter(torch.zeros(nuisance_dim))
        reference = next(iter(model.parameters()), None)
        if reference is not None and reference.is_floating_point():
            self.to(device=reference.device, dtype=reference.dtype)
        optimizer = torch.optim.Adamax if inner_optimizer == "adamax" else torch.optim.Adam
        self.optimizer = optimizer(
            [
                {"params": list(self.nuisance.parameters()), "lr": lr_nuisance},
                {"params": [self.beta, self.gamma], "lr": lr_prior},
            ]
        )

    @classmethod
    def from_config(
        cls, model: nn.Module, num_classes: int, nuisance_dim: int, config: IceConfig
    ) -> IndependenceCrossEntropy:
        """The loss for ``model`` with the settings of ``config``.

        Example:
            >>> from preimage.models import FiRevNet
            >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
            >>> ice = IndependenceCrossEntropy.from_config(model, 10, 54, IceConfig(max_steps=2))
            >>> ice.max_steps, ice.adversary
            (2, 'nce')
        """
        if not isinstance(config, IceConfig):
            raise ConfigError(f"config must be an IceConfig, got {type(config).__name__}")
        return cls(model, num_classes, nuisance_dim, **config.kwargs())

    @property
    def total_dim(self) -> int:
        """:math:`d = C + (d - C)`, the number of input dimensions of the bijection."""
        return self.num_classes + self.nuisance_dim

    @property
    def max_step_scale(self) -> float:
        """Factor of the nuisance cross-entropy in the max step: :math:`1/(d-C)` or 1."""
        return 1.0 / self.nuisance_dim if self.normalize_by_dim else 1.0

    def prior_nll(self, z_n: Tensor) -> Tensor:
        r"""Per-sample :math:`-\sum_k \log p_k((z_n)_k)` under the learned prior, shape ``(B,)``."""
        return gaussian_nll(z_n, self.beta, self.gamma)

    def logit_nll(self, z_s: Tensor) -> Tensor:
        r"""Per-sample :math:`-\log \mathcal{N}(z_s; 0, I)` when ``logit_prior`` is on, else 0."""
        if not self.logit_prior:
            return z_s.new_zeros(z_s.shape[0])
        return (0.5 * z_s.pow(2) + 0.5 * _LOG_2PI).sum(dim=1)

    def mle_term(self, z_n: Tensor, logdet: Tensor, z_s: Tensor | None = None) -> Tensor:
        r"""Per-sample :math:`L_{MLE_n} / d = (-\sum_k \log p_k((z_n)_k) - \log|\det J|) / d`,
        plus :math:`-\log \mathcal{N}(z_s; 0, I) / d` with ``logit_prior`` and ``z_s`` given."""
        nll = self.prior_nll(z_n)
        if z_s is not None:
            nll = nll + self.logit_nll(z_s)
        return (nll - logdet) / self.total_dim

    def adversary_features(self, z_n: Tensor) -> Tensor:
        r"""What the nuisance classifier reads: :math:`z_n`, or with
        ``adversary_input="standardized"`` :math:`(z_n - \mu_B) / \sigma_B` per dimension with
        the batch's statistics (differentiable, so rescaling :math:`z_n` changes nothing the
        classifier sees; a single-sample batch is only centred)."""
        if self.adversary_input == "raw":
            return z_n
        centred = z_n - z_n.mean(dim=0, keepdim=True)
        if z_n.shape[0] < 2:
            return centred
        return centred / (z_n.std(dim=0, keepdim=True) + 1e-6)

    def max_step(self, z_n: Tensor, y: Tensor) -> float:
        r"""Inner step(s) on detached ``z_n``: the classifier fits :math:`y`, the prior fits
        :math:`z_n`.

        Minimises ``max_step_scale * CE(D(z_n), y) + mean(prior_nll(z_n)) / d`` over the
        nuisance classifier and :math:`\beta, \gamma` with :attr:`optimizer`, ``max_steps`` times
        (the classifier reads :meth:`adversary_features`).

        Returns:
            The classifier's (unscaled) cross-entropy before the first step.
        """
        z = z_n.detach()
        y = self._check_labels(y, z)
        features = self.adversary_features(z)
        first: float | None = None
        with torch.enable_grad():
            for _ in range(self.max_steps):
                ce = F.cross_entropy(self.nuisance(features), y)
                if first is None:
                    first = float(ce.detach())
                loss = self.max_step_scale * ce + self.prior_nll(z).mean() / self.total_dim
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if first is None:
            with torch.no_grad():
                first = float(F.cross_entropy(self.nuisance(features), y))
        return first

    def min_objective(
        self,
        z_s: Tensor,
        z_n: Tensor,
        logdet: Tensor,
        y: Tensor,
        logits: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        r"""The network's objective :math:`L_{sCE} + s\,(-w_{nCE} L_{nCE} + w_{MLE} L_{MLE_n}/d)`.

        :math:`s` is :attr:`term_scale` (1 unless an :class:`IceWarmup` ramps it in).

        With ``adversary="uniform"`` the term :math:`-L_{nCE}` becomes
        :math:`+\mathrm{CE}(D(z_n), \mathrm{uniform})`; with ``"shuffled"`` it becomes
        :math:`+\mathrm{CE}(D(z_n), y_{\pi})` for a random permutation :math:`\pi` of the batch.
        The nuisance classifier and the prior enter with detached parameters: gradients flow to
        :math:`z_s, z_n` and ``logdet`` only.

        Args:
            z_s, z_n, logdet: the network's outputs.
            y: labels.
            logits: the class scores the cross-entropy sees (default ``z_s``; a model with a
                head on its logits, e.g. ``FiRevNet(logit_norm=True)``, passes
                ``model.classify(z_s)``).

        Returns:
            ``(loss, terms)``: the batch means ``terms["sce"]``, ``terms["nce"]``,
            ``terms["mle"]`` and the nuisance classifier's ``terms["nuisance_logits"]``.
        """
        y = self._check_labels(y, z_s)
        logits = z_s if logits is None else logits
        params = {name: p.detach() for name, p in self.nuisance.named_parameters()}
        nuisance_logits = torch.func.functional_call(
            self.nuisance, params, (self.adversary_features(z_n),)
        )
        sce = F.cross_entropy(logits, y)
        nce = F.cross_entropy(nuisance_logits, y)
        nll = gaussian_nll(z_n, self.beta.detach(), self.gamma.detach()) + self.logit_nll(z_s)
        mle = ((nll - logdet) / self.total_dim).mean()
        if self.adversary == "uniform":
            nuisance_term = -torch.log_softmax(nuisance_logits, dim=1).mean(dim=1).mean()
        elif self.adversary == "shuffled":
            order = torch.randperm(y.shape[0], device=y.device)
            nuisance_term = F.cross_entropy(nuisance_logits, y[order])
        else:
            nuisance_term = -nce
        terms = self.nce_weight * nuisance_term + self.mle_weight * mle
        loss = sce + self.term_scale * terms
        return loss, {"sce": sce, "nce": nce, "mle": mle, "nuisance_logits": nuisance_logits}

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The trainer hook: inner max step, then the min objective for ``model``.

        The max step runs only while ``model.training`` and gradients are enabled, so evaluating
        the loss on validation data never trains the nuisance classifier on it. The
        cross-entropy sees ``model.classify(z_s)`` (a bijective classifier's head on its logit
        code, the identity for most).

        Returns:
            ``(loss, metrics)``: the min objective (a scalar with a graph to the network) and
            floats ``loss, sce, nce, mle, nce_max`` (classifier cross-entropy before the max
            step), ``acc`` (logit accuracy) and ``nuisance_acc``.
        """
        z, logdet = model(x)
        z_s, z_n = model.split(z)
        y = self._check_labels(y, z_s)
        if z_s.dim() != 2 or z_s.shape[1] != self.num_classes:
            raise ShapeError(
                f"expected logits z_s of shape (batch, {self.num_classes}), got {tuple(z_s.shape)}"
            )
        if z_n.dim() != 2 or z_n.shape[1] != self.nuisance_dim:
            raise ShapeError(
                f"expected nuisance z_n of shape (batch, {self.nuisance_dim}), got "
                f"{tuple(z_n.shape)}"
            )
        if model.training and torch.is_grad_enabled():
            nce_max = self.max_step(z_n, y)
        else:
            with torch.no_grad():
                nce_max = float(F.cross_entropy(self.nuisance(self.adversary_features(z_n)), y))
        logits = model.classify(z_s)
        loss, terms = self.min_objective(z_s, z_n, logdet, y, logits)
        metrics = {
            "loss": float(loss.detach()),
            "sce": float(terms["sce"].detach()),
            "nce": float(terms["nce"].detach()),
            "mle": float(terms["mle"].detach()),
            "nce_max": nce_max,
            "acc": float((logits.detach().argmax(dim=1) == y).float().mean()),
            "nuisance_acc": float(
                (terms["nuisance_logits"].detach().argmax(dim=1) == y).float().mean()
            ),
        }
        return loss, metrics

    def _check_labels(self, y: Tensor, like: Tensor) -> Tensor:
        batch = like.shape[0]
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != batch:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(f"labels must have shape ({batch},), got {shape}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ConfigError(f"labels must be integer class indices, got {y.dtype}")
        if batch and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ConfigError(f"labels must lie in [0, {self.num_classes})")
        return y.to(device=like.device, dtype=torch.long)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, nuisance_dim={self.nuisance_dim}, "
            f"max_steps={self.max_steps}, normalize_by_dim={self.normalize_by_dim}, "
            f"nce_weight={self.nce_weight}, mle_weight={self.mle_weight}, "
            f"adversary={self.adversary!r}, adversary_input={self.adversary_input!r}, "
            f"logit_prior={self.logit_prior}, inner_optimizer={self.inner_optimizer!r}"
        )


class IceWarmup(Callback):
    r"""Ramp the iCE terms in: :attr:`IndependenceCrossEntropy.term_scale` per epoch.

    Epoch :math:`e` (from 1) trains with :math:`s_e = \min(1, (e - 1) / W)` times the nuisance
    and MLE terms, :math:`W` = ``epochs``: plain cross-entropy first, so the logits learn the
    label before the adversary starts to push it out of :math:`z_n`. The scale is set at the
    start of every epoch, so a resumed run continues the same schedule.

    Deviation, and why: the paper trains with the full objective from the start; at our CPU
    budgets that kept the logits from learning (BENCHMARKS.md, iCE ablation), the known failure
    of adversarial objectives that act before the features they act on exist.

    Args:
        loss: the iCE loss to schedule.
        epochs: :math:`W`; 0 leaves the scale at 1.

    Example:
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((6,), 2, stages=1, blocks_per_stage=1, hidden=4)
        >>> ice = IndependenceCrossEntropy(model, 2, 4, nuisance_hidden=8)
        >>> warm = IceWarmup(ice, 2)
        >>> [warm.scale(e) for e in (1, 2, 3, 4)]
        [0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, loss: IndependenceCrossEntropy, epochs: int) -> None:
        self.loss = loss
        self.epochs = require_int("warmup_epochs", epochs, 0)

    def scale(self, epoch: int) -> float:
        """:math:`s_e` of epoch ``epoch`` (numbered from 1)."""
        return 1.0 if self.epochs == 0 else min(1.0, (epoch - 1) / self.epochs)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.loss.term_scale = self.scale(epoch)

    def on_train_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.loss.term_scale = 1.0
