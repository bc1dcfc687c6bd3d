"""Tests of preimage.analysis.relu_preimage against constructions and a brute-force LP oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from torch import nn

from preimage.analysis import relu_preimage
from preimage.analysis.relu_preimage import (
    KINDS,
    classify_preimage,
    is_omnidirectional,
    layer_matrix,
    layer_preimages,
    omnidirectional_stack,
)
from preimage.errors import ConfigError, ShapeError

# The four cases of thesis figure 3.2 (hyperplanes a_i x + b_i = 0 with normals a_i), each with
# the kind of the pre-image of y = 0 (every row inactive): {x : A x + b <= 0}.
P = np.array([0.5, -1.0])
FIGURE_3_2 = {
    # (a) omnidirectional for p: the hyperplanes meet in p, the normals leave no half-space free.
    "a": (np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), None, "singleton"),
    # (b) meeting in p, but the normals leave a half-space free: a cone.
    "b": (np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), None, "unbounded"),
    # (c) meeting in p, opposite normals and one more: a ray.
    "c": (np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), None, "unbounded"),
    # (d) no common point, omnidirectional normals: a triangle.
    "d": (np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), np.array([0.0, 0.0, -1.0]), "compact"),
}


@pytest.fixture(params=sorted(FIGURE_3_2))
def figure_case(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, str]:
    a, b, kind = FIGURE_3_2[request.param]
    return a, (-a @ P if b is None else b), kind


def _constraints(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """linprog's keyword arguments for the pre-image {x : ReLU(A x + b) = y} (y >= 0)."""
    act = y > 0
    eq = {"A_eq": a[act], "b_eq": y[act] - b[act]} if act.any() else {}
    ub = {"A_ub": a[~act], "b_ub": -b[~act]} if (~act).any() else {}
    return {**eq, **ub}


def _solve(cost: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray) -> object:
    return linprog(cost, **_constraints(a, b, y), bounds=[(None, None)] * len(cost), method="highs")


def oracle(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> str:
    """The kind by brute force: min and max of every null-space coordinate (2k LPs in x)."""
    if np.any(y < 0):
        return "empty"
    act = y > 0
    n = a.shape[1]
    if _solve(np.zeros(n), a, b, y).status == 2:
        return "empty"
    basis = scipy.linalg.null_space(a[act]) if act.any() else np.eye(n)
    widths = []
    for v in basis.T:
        lo, hi = _solve(v, a, b, y), _solve(-v, a, b, y)
        if lo.status == 3 or hi.status == 3:
            return "unbounded"
        widths.append(-hi.fun - lo.fun)
    return "singleton" if max(widths, default=0.0) <= 1e-7 else "compact"


def omni_oracle(a: np.ndarray) -> bool:
    """No d != 0 with A d <= 0: max of every +-d_j over the cone within the unit box is 0."""
    k = a.shape[1]
    for j in range(k):
        for sign in (1.0, -1.0):
            cost = np.zeros(k)
            cost[j] = -sign
            res = linprog(cost, A_ub=a, b_ub=np.zeros(len(a)), bounds=[(-1, 1)] * k, method="highs")
            if -res.fun > 1e-9:
                return False
    return True


def relu(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.maximum(a @ x + b, 0.0)


def test_figure_3_2_cases(figure_case: tuple[np.ndarray, np.ndarray, str]) -> None:
    a, b, kind = figure_case
    res = classify_preimage(torch.tensor(a), torch.tensor(b), torch.zeros(3, dtype=torch.float64))
    assert res.kind == kind == oracle(a, b, np.zeros(3))
    assert res.null_dim == 2
    assert np.allclose(relu(a, b, res.point.numpy()), 0.0)
    if kind == "singleton":
        assert np.allclose(res.point.numpy(), P)


def test_figure_3_2_d_box_is_the_triangle() -> None:
    a, b, _ = FIGURE_3_2["d"]
    res = classify_preimage(torch.tensor(a), torch.tensor(b), torch.zeros(3))
    assert res.box is not None
    assert res.box[0].tolist() == pytest.approx([-1.0, -1.0])
    assert res.box[1].tolist() == pytest.approx([0.0, 0.0])


def test_full_rank_active_rows_are_singletons_without_lp() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = torch.randn(12, 4, generator=gen, dtype=torch.float64)
        x = torch.randn(4, generator=gen, dtype=torch.float64)
        b = -a @ x + torch.rand(12, generator=gen, dtype=torch.float64) - 0.2
        y = torch.relu(a @ x + b)
        res = classify_preimage(a, b, y)
        assert (res.kind, res.null_dim, res.n_lps) == ("singleton", 0, 0)
        assert torch.allclose(res.point, x)


def test_omnidirectional_stacks_give_singletons_and_polytopes() -> None:
    gen = torch.Generator().manual_seed(1)
    for n in (1, 2, 3, 5):
        a = omnidirectional_stack(torch.randn(n, n, generator=gen, dtype=torch.float64))
        p = torch.randn(n, generator=gen, dtype=torch.float64)
        assert is_omnidirectional(a)
        tight = classify_preimage(a, -a @ p, torch.zeros(2 * n))
        assert tight.kind == "singleton" and torch.allclose(tight.point, p)
        loose = classify_preimage(a, -a @ p - 1.0, torch.zeros(2 * n))
        assert loose.kind == "compact" and loose.null_dim == n
        assert torch.all(loose.box[0] < p) and torch.all(loose.box[1] > p)


def test_fewer_rows_than_inputs_is_unbounded_without_lp() -> None:
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        a = torch.randn(3, 5, generator=gen, dtype=torch.float64)
        b = torch.randn(3, generator=gen, dtype=torch.float64)
        x = torch.randn(5, generator=gen, dtype=torch.float64)
        y = torch.relu(a @ x + b)
        res = classify_preimage(a, b, y, x_ref=x)
        assert res.kind == "unbounded" and res.n_lps == 0 and res.null_dim >= 2
        # Without a known input, one LP finds a point first.
        assert classify_preimage(a, b, y).n_lps <= 1


def test_half_space_rows_are_not_omnidirectional() -> None:
    a = torch.randn(30, 3, generator=torch.Generator().manual_seed(3))
    a[:, 0] = a[:, 0].abs() + 0.1
    assert not is_omnidirectional(a)
    assert is_omnidirectional(torch.zeros(4, 0))
    with pytest.raises(ShapeError):
        is_omnidirectional(torch.zeros(3))


def test_priors_bound_the_preimage() -> None:
    a, b = torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.zeros(2)
    y = torch.tensor([1.0, 0.0])
    assert classify_preimage(a, b, y).kind == "unbounded"
    boxed = classify_preimage(a, b, y, lower=0.0)
    assert boxed.kind == "compact"
    assert boxed.box[0].tolist() == pytest.approx([0.0, 0.5])
    assert boxed.box[1].tolist() == pytest.approx([0.5, 1.0])
    assert classify_preimage(a, b, y, lower=0.0, upper=0.4).kind == "empty"


def test_negative_or_inconsistent_outputs_are_empty() -> None:
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert classify_preimage(a, torch.zeros(2), torch.tensor([-1.0, 0.0])).kind == "empty"
    assert classify_preimage(a, torch.zeros(2), torch.tensor([1.0, 1.0])).kind == "empty"
    with pytest.raises(ShapeError):
        classify_preimage(a, torch.zeros(3), torch.zeros(2))


small = st.integers(-2, 2)


@st.composite
def layers(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    n = draw(st.integers(1, 3))
    m = draw(st.integers(1, 6))
    a = np.array(draw(st.lists(small, min_size=m * n, max_size=m * n)), float).reshape(m, n)
    b = np.array(draw(st.lists(small, min_size=m, max_size=m)), float)
    if draw(st.booleans()):
        x = np.array(draw(st.lists(small, min_size=n, max_size=n)), float)
        return a, b, relu(a, b, x), (x if draw(st.booleans()) else None)
    y = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0]), min_size=m, max_size=m)))
    return a, b, y, None


# A ray {(-t, 0, t) : t >= 0} that the certificate search once took for a point: the row
# [0, 0, -1] cannot enter a positive combination, but its weight came out of the projection as
# a few ulps with a residual that rounded to zero (found by this test).
_RAY = (
    np.array([[-2, 1, -2], [1, 0, 1], [0, -1, 0], [-1, -2, -1], [0, 0, -1]], float),
    np.array([0, 1, 0, 0, 0], float),
    np.array([0, 1, 0, 0, 0], float),
    None,
)


@settings(max_examples=200, deadline=None)
@given(layers())
@example(_RAY)
def test_agrees_with_brute_force_oracle(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
) -> None:
    a, b, y, x = case
    res = classify_preimage(a, b, y, x_ref=x)
    assert res.kind == oracle(a, b, y)
    assert res.n_lps <= 3 + (2 * a.shape[1] if res.kind == "compact" else 0)
    if res.kind != "empty":
        assert np.allclose(relu(a, b, res.point.numpy()), y, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda k: st.lists(st.lists(small, min_size=k, max_size=k), max_size=7)
    )
)
def test_is_omnidirectional_agrees_with_oracle(rows: list[list[int]]) -> None:
    if not rows:
        return
    a = np.array(rows, float)
    assert is_omnidirectional(a) == omni_oracle(a)


@settings(max_examples=40, deadline=None)
@given(layers())
def test_compact_preimage_points_map_to_y(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
) -> None:
    a, b, y, _ = case
    res = classify_preimage(a, b, y)
    if res.kind != "compact":
        return
    lo, hi = res.box[0].numpy(), res.box[1].numpy()
    n = a.shape[1]
    # Vertices of the pre-image by random objectives; their convex combinations sample it.
    rng = np.random.default_rng(0)
    vertices = [_solve(rng.standard_normal(n), a, b, y).x for _ in range(6)]
    weights = rng.dirichlet(np.ones(len(vertices)), size=20)
    for x in weights @ np.array(vertices):
        assert np.allclose(relu(a, b, x), y, atol=1e-9)
        assert np.all(x >= lo - 1e-9) and np.all(x <= hi + 1e-9)
    # The box is tight: a vertex reaches every face of it.
    for j in range(n):
        assert _solve(np.eye(n)[j], a, b, y).fun == pytest.approx(lo[j], abs=1e-9)
        assert -_solve(-np.eye(n)[j], a, b, y).fun == pytest.approx(hi[j], abs=1e-9)


def test_layer_matrix_of_strided_convolution() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    w, b = layer_matrix(conv, (2, 5, 5))
    assert w.shape == (3 * 3 * 3, 50)
    assert torch.allclose(x.reshape(4, -1) @ w.T + b, conv(x).reshape(4, -1))
    linear = nn.Linear(3, 2)
    assert torch.equal(layer_matrix(linear, (3,))[0], linear.weight.detach())


def test_layer_preimages_match_single_queries() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(36, 3),
        nn.ReLU(),
        nn.Linear(3, 8),
        nn.ReLU(),
    )
    x = torch.randn(6, 1, 3, 3)
    reports = layer_preimages(net, x, progress=True, progress_min=1)
    assert [r.layer for r in reports] == ["0", "3", "5"]
    assert [r.nonnegative_prior for r in reports] == [False, True, True]
    assert all(kind == "unbounded" for kind in reports[1].kinds)  # 3 rows, 36 inputs
    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        h = net64[:5](x.double())
    weight, bias = net64[5].weight.detach(), net64[5].bias.detach()
    for h_in, kind in zip(h, reports[2].kinds, strict=True):
        y = torch.relu(weight @ h_in + bias)
        assert classify_preimage(weight, bias, y, lower=0.0).kind == kind
    assert sum(reports[0].shares().values()) == pytest.approx(1.0)
    assert set(reports[0].kinds) <= set(KINDS)
    with pytest.raises(ConfigError):
        layer_preimages(net, x, layers=["2"], progress=False)
    with pytest.raises(ConfigError):
        layer_preimages(nn.ReLU(), x)  # type: ignore[arg-type]


def _lp_omnidirectional(a: np.ndarray) -> bool:
    """The LP alone (rows normalised, rank known to be full): A^T lambda = 0, lambda >= 1."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    res = linprog(
        np.zeros(len(a)), A_eq=a.T, b_eq=np.zeros(a.shape[1]), bounds=[(1.0, None)] * len(a),
        method="highs",
    )  # fmt: skip
    return res.status == 0


@pytest.mark.parametrize("seed", range(40))
def test_the_certificate_search_agrees_with_the_lp(seed: int) -> None:
    # Random rows around a drifting mean: both answers occur; the projection search may only
    # ever answer "yes" when the LP does, and then it saves the LP.
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    m = int(rng.integers(k + 1, 4 * k + 2))
    a = rng.standard_normal((m, k)) + rng.uniform(0.0, 1.5) * rng.standard_normal(k)
    expected = _lp_omnidirectional(a)
    found, lps = relu_preimage._omnidirectional(a, 1e-9)
    assert found == expected
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    basis = np.linalg.qr(unit)[0]
    if relu_preimage._positive_combination(
        unit, basis, float(np.linalg.svd(unit, compute_uv=False)[-1]), 1e-9
    ):
        assert expected and lps == 0


def test_omnidirectional_stacks_need_no_lp() -> None:
    rng = np.random.default_rng(0)
    stack = omnidirectional_stack(torch.as_tensor(rng.standard_normal((30, 20)))).numpy()
    assert relu_preimage._omnidirectional(stack, 1e-9) == (True, 0)
    # One half-space left free (all rows with a positive first coordinate): an LP says no.
    half = np.abs(stack[:, :1]) + 0.1
    assert relu_preimage._omnidirectional(np.hstack([half, stack[:, 1:]]), 1e-9) == (False, 1)
