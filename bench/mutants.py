"""Plant known bugs one at a time and report which the test suite catches (issue 17).

A green ``make test`` should mean the methods are right. Each mutant below is a realistic bug (a
dropped reweighting, a sign, an ignored setting, a silently swapped objective) planted in a copy
of the repository; the tests that should notice it are run against the copy. A mutant is
*caught* when those tests fail while they pass on the unmutated copy. Not part of ``make test``
(it runs the chosen tests once per mutant); the table goes to BENCHMARKS.md.

Usage::

    python bench/mutants.py              # every mutant, markdown table on stdout
    python bench/mutants.py --list       # names only
    python bench/mutants.py --only roulette-unweighted --only ice-prior-frozen

New modules add their mutants to :data:`MUTANTS` when they land.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``original`` (exactly once in ``path``) by ``mutated``."""

    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    what: str


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "roulette-unweighted",
        "preimage/nn/logdet.py",
        "        lambda k: 1.0 / roulette_survival(k, p, n_exact_terms),",
        "        lambda k: 1.0,",
        ("tests/nn/test_logdet.py",),
        "Russian roulette without its 1/P(N >= k) reweighting (biased)",
    ),
    Mutant(
        "iresblock-roulette-negated",
        "preimage/nn/iresblock.py",
        '        estimator = roulette_logdet if self.logdet == "roulette" else neumann_logdet\n'
        "        return estimator(",
        '        estimator = roulette_logdet if self.logdet == "roulette" else neumann_logdet\n'
        "        negated = lambda *a, **k: (lambda y, ld: (y, -ld))(*estimator(*a, **k))\n"
        "        return negated(",
        ("tests/nn/test_properties.py", "tests/nn/test_iresblock.py"),
        "IResBlock returns the negated roulette/Neumann log-det (IResNetFlow's default path)",
    ),
    Mutant(
        "iresblock-ignores-n-terms",
        "preimage/nn/iresblock.py",
        "self.g, x, n_terms=self.n_terms, n_probes=self.n_probes, probe=self.probe",
        "self.g, x, n_terms=10, n_probes=self.n_probes, probe=self.probe",
        ("tests/nn/test_logdet.py", "tests/nn/test_iresblock.py"),
        "IResBlock ignores n_terms",
    ),
    Mutant(
        "iresblock-ignores-roulette-p",
        "preimage/nn/iresblock.py",
        "            p=self.roulette_p,",
        "            p=0.5,",
        ("tests/nn/test_logdet.py", "tests/nn/test_iresblock.py"),
        "IResBlock ignores roulette_p",
    ),
    Mutant(
        "iresblock-ignores-n-exact-terms",
        "preimage/nn/iresblock.py",
        "            n_exact_terms=self.n_exact_terms,",
        "            n_exact_terms=2,",
        ("tests/nn/test_logdet.py", "tests/nn/test_iresblock.py"),
        "IResBlock ignores n_exact_terms",
    ),
    Mutant(
        "iresblock-ignores-n-probes",
        "preimage/nn/iresblock.py",
        "            n_probes=self.n_probes,\n            probe=self.probe,",
        "            n_probes=1,\n            probe=self.probe,",
        ("tests/nn/test_logdet.py", "tests/nn/test_iresblock.py"),
        "IResBlock ignores n_probes in the roulette path",
    ),
    Mutant(
        "ice-prior-frozen",
        "preimage/losses/ice.py",
        "loss = self.max_step_scale * ce + self.prior_nll(z).mean() / self.total_dim",
        "loss = self.max_step_scale * ce",
        ("tests/losses/test_ice.py",),
        "iCE's max step no longer fits the prior (beta, gamma)",
    ),
    Mutant(
        "study-ice-trains-ce",
        "preimage/studies/ce_ice_models.py",
        "trainer = Trainer(net, train, test, recipe, loss_fn=loss, progress=progress)",
        "trainer = Trainer(net, train, test, recipe, loss_fn=None, progress=progress)",
        ("tests/studies/test_ce_ice_models.py",),
        "the studies' `ice` objective silently trains plain cross-entropy",
    ),
    Mutant(
        "logdet-study-checks-disabled",
        "preimage/studies/logdet_estimator.py",
        "met=z_score <= 3",
        "met=True",
        ("tests/studies/test_logdet_estimator.py",),
        "the log-det study's roulette self-check always reports met",
    ),
    Mutant(
        "moons-one-blob",
        "preimage/data/toy2d.py",
        "    return 2.0 * (points - np.array([0.5, 0.25]))",
        "    return 0.5 * rng.standard_normal((n, 2))",
        ("tests/data/test_toy2d.py", "tests/studies/test_toy_density.py"),
        "the moons are replaced by one Gaussian blob",
    ),
    Mutant(
        "relu-tight-rows-sign",
        "preimage/analysis/relu_preimage.py",
        "    tight = (c - reduced @ z) <= eps * scale",
        "    tight = (c - reduced @ z) <= -eps * scale",
        ("tests/analysis/test_relu_preimage.py",),
        "ReLU pre-image: tight inactive rows chosen with the wrong sign",
    ),
    Mutant(
        "relu-omnidirectional-lp",
        "preimage/analysis/relu_preimage.py",
        "bounds=[(1.0, None)] * m)",
        "bounds=[(0.0, None)] * m)",
        ("tests/analysis/test_relu_preimage.py",),
        "omnidirectionality LP accepts the trivial zero combination",
    ),
    Mutant(
        "relu-active-rows",
        "preimage/analysis/relu_preimage.py",
        "    active = out > 0",
        "    active = out >= 0",
        ("tests/analysis/test_relu_preimage.py",),
        "zero outputs counted as active rows",
    ),
    Mutant(
        "stability-condition",
        "preimage/analysis/stability.py",
        "    condition = top / float(nonzero[-1]) if nonzero.numel() else math.nan",
        "    condition = top / float(nonzero[0]) if nonzero.numel() else math.nan",
        ("tests/analysis/test_stability.py",),
        "condition number over the largest instead of the smallest non-zero singular value",
    ),
    Mutant(
        "ksg-strict-radius",
        "preimage/information/knn.py",
        "strict = np.nextafter(radius, 0.0)",
        "strict = radius",
        ("tests/information/test_knn.py",),
        "KSG counts neighbours at the k-th distance (not strictly inside)",
    ),
    Mutant(
        "miller-madow",
        "preimage/information/discrete.py",
        "h += (counts.size - 1) / (2.0 * n)",
        "h += counts.size / (2.0 * n)",
        ("tests/information/test_discrete.py",),
        "Miller-Madow correction off by one bin",
    ),
    Mutant(
        "kernel-upper-bound",
        "preimage/information/kernel.py",
        "upper = _pairwise_bound(sq, 2.0 * var)",
        "upper = _pairwise_bound(sq, 8.0 * var)",
        ("tests/information/test_kernel.py",),
        "Kolchinsky upper bound with the wrong kernel width",
    ),
    Mutant(
        "gradient-snr-std",
        "preimage/analysis/gradient_snr.py",
        "return (self._m2 / self.count).sqrt()",
        "return (self._m2 / max(self.count - 1, 1)).sqrt()",
        ("tests/analysis/test_gradient_snr.py",),
        "GradientSNR with the sample instead of the population std",
    ),
    Mutant(
        "ims-folds-by-spot",
        "preimage/analysis/ims_protocol.py",
        "        test = np.isin(groups, shuffled[f::n_folds])",
        "        test = np.arange(groups.size) % n_folds == f",
        ("tests/analysis/test_ims_protocol.py",),
        "cross-validation folds split spots, not TMAs (leakage)",
    ),
    Mutant(
        "ims-core-vote",
        "preimage/analysis/ims_protocol.py",
        "    core_pred = classes[votes.argmax(axis=1)]",
        "    core_pred = classes[votes.argmin(axis=1)]",
        ("tests/analysis/test_ims_protocol.py",),
        "core-level vote picks the minority class",
    ),
    Mutant(
        "ims-roc-ranking",
        "preimage/analysis/ims_protocol.py",
        '    ranking = np.argsort(-np.abs(mann_whitney_auc(xtr, ytr) - 0.5), kind="stable")',
        '    ranking = np.argsort(np.abs(mann_whitney_auc(xtr, ytr) - 0.5), kind="stable")',
        ("tests/analysis/test_ims_protocol.py",),
        "ROC/LDA keeps the least discriminative bins",
    ),
    Mutant(
        "tof-bins-linear",
        "preimage/data/tma_synthetic.py",
        "    return (np.sqrt(mz_lo) + delta * np.arange(n_bins + 1)) ** 2",
        "    return np.linspace(mz_lo, mz_hi, n_bins + 1)",
        ("tests/data/test_averagine.py", "tests/data/test_tma_synthetic.py"),
        "TOF bins replaced by equal-width bins",
    ),
    Mutant(
        "averagine-relative-cutoff",
        "preimage/data/averagine.py",
        "    keep = probs >= t_iso",
        "    keep = probs >= t_iso * probs.max()",
        ("tests/data/test_averagine.py",),
        "isotope cut-off relative instead of absolute",
    ),
    Mutant(
        "inforeg-squared-feature-norm",
        "preimage/losses/info_reg.py",
        "torch.linalg.vector_norm(w_y, dim=1) * torch.linalg.vector_norm(features, dim=1)",
        "torch.linalg.vector_norm(w_y, dim=1) * features.pow(2).sum(dim=1)",
        ("tests/losses/test_info_reg.py",),
        "information regulariser with ||F(x)||^2 instead of ||F(x)||",
    ),
    Mutant(
        "inforeg-no-soft-threshold",
        "preimage/losses/info_reg.py",
        "return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)",
        "return torch.sign(w) * (w.abs() - threshold)",
        ("tests/losses/test_info_reg.py",),
        "proximal step without the clamp (no exact zeros)",
    ),
    Mutant(
        "predictive-marginal-entropy",
        "preimage/information/predictive.py",
        "h_marginal = _entropy(p.mean(dim=0))",
        "h_marginal = _entropy(p).mean()",
        ("tests/information/test_predictive.py",),
        "empirical marginal entropy taken per sample",
    ),
    Mutant(
        "predictive-outer-product",
        "preimage/information/predictive.py",
        "outer = pi.sum(dim=1, keepdim=True) * pi.sum(dim=0, keepdim=True)",
        "outer = pi.sum(dim=1, keepdim=True) * pi.sum(dim=1, keepdim=True).T",
        ("tests/information/test_predictive.py",),
        "I(Y;Y_hat) against the wrong product of marginals",
    ),
)
"""The planted bugs; each names the tests that must catch it."""


def _copy_repo(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for name in files:
        src = REPO / name
        if src.is_file():
            dst = target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    env.setdefault("PREIMAGE_DATA", str(REPO.parent / "shared" / "data"))
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.perf_counter() - start


def check(mutants: tuple[Mutant, ...], timeout: float) -> list[dict[str, object]]:
    """Run every mutant's tests unmutated, then mutated; one result row per mutant."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="preimage-mutants-") as tmp:
        copy = Path(tmp)
        _copy_repo(copy)
        for m in mutants:
            target = copy / m.path
            source = target.read_text()
            if source.count(m.original) != 1:
                rows.append({"mutant": m.name, "result": "NOT PLANTED (text not found once)"})
                continue
            baseline, _ = _run_tests(copy, m.tests, timeout)
            target.write_text(source.replace(m.original, m.mutated))
            try:
                code, seconds = _run_tests(copy, m.tests, timeout)
            finally:
                target.write_text(source)
            if baseline != 0:
                result = f"tests fail unmutated (exit {baseline})"
            elif code == 0:
                result = "SURVIVED"
            elif code == 1:
                result = "caught"
            else:
                result = f"error (exit {code}): not a clean catch"
            rows.append(
                {
                    "mutant": m.name,
                    "what": m.what,
                    "tests": ", ".join(m.tests),
                    "result": result,
                    "seconds": round(seconds, 1),
                }
            )
            print(f"{m.name}: {result}", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="mutant name (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per test run")
    args = parser.parse_args()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:34s} {m.what}")
        return 0
    known = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown mutants: {', '.join(unknown)}")
    chosen = tuple(m for m in MUTANTS if not args.only or m.name in args.only)
    rows = check(chosen, args.timeout)
    print("| mutant | planted bug | result | tests | s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mutant']} | {r.get('what', '')} | {r['result']} | {r.get('tests', '')} | "
            f"{r.get('seconds', '')} |"
        )
    return 0 if all(str(r["result"]).startswith("caught") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
