"""The blocked Cholesky factor (glmmbench.engine.linalg) against dense linear algebra.

Every path of ``crossproducts`` / ``factorize`` (dense or sparse ``L21``; indexed
or dense rest columns, such as a smooth's penalised part; cross products formed
directly or scaled from those of ``[Z, X, y]``) must give the factor of

    A = [Lambda' Z' W Z Lambda + I, Lambda' Z' W X; X' W Z Lambda, X' W X]

that ``numpy.linalg.cholesky`` gives for the dense matrix built from ``Design.Z()``:
the same log-determinants and the same solution of the penalized system.
Property-tested over term structures (number of terms, columns per term,
levels, a dense one-level term, weights).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmmbench.engine import linalg
from glmmbench.engine.deviance import z_lambda
from glmmbench.engine.linalg import ReIndex, crossproducts, factorize, scale_crossproducts
from glmmbench.model.design import Design, RandomTerm
from glmmbench.model.theta import lambdas


def _design(rng: np.random.Generator, n: int, terms_spec, dense_q: int, p: int) -> Design:
    terms = []
    for i, (q, nlev) in enumerate(terms_spec):
        codes = rng.integers(0, nlev, n)
        codes[:nlev] = np.arange(nlev)  # every level occurs
        Xr = np.column_stack([np.ones(n)] + [rng.standard_normal(n) for _ in range(q - 1)])
        terms.append(RandomTerm(f"g{i}", f"g{i}", tuple(f"c{k}" for k in range(q)),
                                tuple(f"l{j}" for j in range(nlev)), codes, Xr))
    # lme4's order: decreasing number of levels; a dense (smooth-like) term last
    terms.sort(key=lambda t: -t.nlevels)
    if dense_q:
        terms.append(RandomTerm("s(x)", "s(x)", tuple(f"s{k}" for k in range(dense_q)), ("1",),
                                np.zeros(n, dtype=np.intp), rng.standard_normal((n, dense_q)),
                                smooth="s(x)"))
    X = np.column_stack([np.ones(n)] + [rng.standard_normal(n) for _ in range(p - 1)])
    y = rng.standard_normal(n)
    return Design("y ~ .", "y", y, X, tuple(f"x{j}" for j in range(p)), np.ones(n),
                  np.zeros(n), tuple(terms))


def _theta(rng: np.random.Generator, design: Design) -> np.ndarray:
    parts = []
    for b in design.cov_blocks:
        t = rng.uniform(0.2, 1.5, b.ntheta)
        parts.append(t)
    return np.concatenate(parts)


def _dense_reference(design: Design, theta: np.ndarray, w: np.ndarray):
    ZL = design.Z().toarray() @ _lambda_full(design, theta)
    C = np.hstack([ZL, design.X])
    A = C.T @ (w[:, None] * C)
    m = ZL.shape[1]
    A[:m, :m] += np.eye(m)
    L = np.linalg.cholesky(A)
    sol = np.linalg.solve(A, C.T @ (w * design.y))
    return L, m, sol


def _lambda_full(design: Design, theta: np.ndarray) -> np.ndarray:
    import scipy.linalg as sla

    blocks = []
    for t, L in zip(design.terms, lambdas(theta, design.cov_blocks), strict=True):
        blocks += [L] * t.nlevels
    return sla.block_diag(*blocks)


def _check(design: Design, theta: np.ndarray, w: np.ndarray, sparse21: bool, scaled: bool,
           monkeypatch) -> None:
    monkeypatch.setattr(linalg, "SPARSE_L21", 0 if sparse21 else 10**12)
    ix = ReIndex.from_design(design)
    if scaled:
        raw = crossproducts(ix, [t.Xr for t in design.terms], w, design.X, design.y)
        cp = scale_crossproducts(raw, ix, lambdas(theta, design.cov_blocks))
    else:
        cp = crossproducts(ix, z_lambda(design, theta), w, design.X, design.y)
    fac = factorize(cp, ix.q1)
    L, m, sol = _dense_reference(design, theta, w)
    d = np.log(np.diag(L))
    np.testing.assert_allclose(fac.logdet_Z(), 2 * d[:m].sum(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fac.logdet_X(), 2 * d[m:].sum(), rtol=1e-10, atol=1e-10)
    c1, c2, cX = fac.forward(cp.r1, cp.r2, cp.rX)
    u, beta = fac.backward(c1, c2, cX)
    np.testing.assert_allclose(np.concatenate([u, beta]), sol, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fac.dense_tail(0), L, rtol=1e-8, atol=1e-10)


TERMS = st.lists(st.tuples(st.integers(1, 3), st.integers(2, 12)), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(terms=TERMS, dense_q=st.sampled_from([0, 0, 3]), p=st.integers(1, 3),
       sparse21=st.booleans(), scaled=st.booleans(), weighted=st.booleans(),
       seed=st.integers(0, 2**16))
def test_factor_equals_dense_cholesky(terms, dense_q, p, sparse21, scaled, weighted, seed,
                                      monkeypatch):
    rng = np.random.default_rng(seed)
    n = 60
    design = _design(rng, n, terms, dense_q, p)
    w = rng.uniform(0.2, 3.0, n) if weighted else np.ones(n)
    _check(design, _theta(rng, design), w, sparse21, scaled, monkeypatch)


@pytest.mark.parametrize("sparse21", [False, True])
def test_inverse_diagonal_blocks_equal_dense_inverse(sparse21, monkeypatch):
    monkeypatch.setattr(linalg, "SPARSE_L21", 0 if sparse21 else 10**12)
    rng = np.random.default_rng(4)
    design = _design(rng, 80, [(2, 9), (1, 5), (2, 3)], 0, 2)
    theta = _theta(rng, design)
    ix = ReIndex.from_design(design)
    fac = factorize(crossproducts(ix, z_lambda(design, theta), np.ones(80), None, None), ix.q1)
    ZL = design.Z().toarray() @ _lambda_full(design, theta)
    inv = np.linalg.inv(ZL.T @ ZL + np.eye(ZL.shape[1]))
    start = 0
    for t, blk in zip(design.terms, fac.inverse_diag_blocks(ix), strict=True):
        for j in range(t.nlevels):
            s = start + j * t.q
            np.testing.assert_allclose(blk[j], inv[s:s + t.q, s:s + t.q], rtol=1e-9,
                                       atol=1e-12)
        start += t.nlevels * t.q


def _weighted_factor(terms, dense_q: int, sparse21: bool, seed: int, monkeypatch):
    """A random design's weighted factor of ``A`` (one fixed effect) and the dense
    reference: ``(design, ix, rng, V, fac, Z Lambda, A^{-1})``."""
    monkeypatch.setattr(linalg, "SPARSE_L21", 0 if sparse21 else 10**12)
    rng = np.random.default_rng(seed)
    design = _design(rng, 60, terms, dense_q, 1)
    theta = _theta(rng, design)
    ix = ReIndex.from_design(design)
    w = rng.uniform(0.2, 3.0, 60)
    V = z_lambda(design, theta)
    fac = factorize(crossproducts(ix, V, w, None, None), ix.q1)
    ZL = design.Z().toarray() @ _lambda_full(design, theta)
    inv = np.linalg.inv(ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1]))
    return design, ix, rng, V, fac, ZL, inv


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(terms=TERMS, dense_q=st.sampled_from([0, 3]), sparse21=st.booleans(),
       seed=st.integers(0, 2**16))
def test_inverse_traces_equal_dense_inverse(terms, dense_q, sparse21, seed, monkeypatch):
    design, ix, _, _, fac, _, inv = _weighted_factor(terms, dense_q, sparse21, seed,
                                                     monkeypatch)
    diag = np.diag(inv)
    bounds = np.cumsum([0] + [t.nlevels * t.q for t in design.terms])
    expected = [diag[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_allclose(fac.inverse_traces(ix), expected, rtol=1e-9)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(terms=TERMS, dense_q=st.sampled_from([0, 3]), sparse21=st.booleans(),
       seed=st.integers(0, 2**16))
def test_observation_cells_equal_dense_inverse(terms, dense_q, sparse21, seed, monkeypatch):
    """``cell_products(inverse_blocks)`` is ``A^{-1} v_i`` at observation i's positions,
    so that its row sums with ``v_i`` are the leverages ``v_i' A^{-1} v_i``; and
    ``Ztv``/``gather`` are ``(Z Lambda)' v`` and ``u`` under each observation's columns."""
    _, ix, rng, V, fac, ZL, inv = _weighted_factor(terms, dense_q, sparse21, seed, monkeypatch)
    Vc = np.hstack(V)
    PV = ix.cell_products(*fac.inverse_blocks(ix), Vc)
    np.testing.assert_allclose(np.sum(Vc * PV, axis=1), np.einsum("ia,ab,ib->i", ZL, inv, ZL),
                               rtol=1e-9)
    v = rng.standard_normal(60)
    np.testing.assert_allclose(ix.Ztv(V, v), ZL.T @ v, rtol=1e-10, atol=1e-12)
    u = rng.standard_normal(ZL.shape[1])
    np.testing.assert_allclose(np.sum(Vc * ix.gather(u), axis=1), ZL @ u, rtol=1e-10,
                               atol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(terms=TERMS, dense_q=st.sampled_from([0, 3]), p=st.integers(1, 3),
       weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_dense_system_equals_blocked_factor(terms, dense_q, p, weighted, seed):
    """A small LMM's deviance terms from the one dense augmented factor equal the
    blocked factor's: log|L_Z|^2, log|R_X|^2 and r2."""
    from glmmbench.engine.pls import solve_pls

    rng = np.random.default_rng(seed)
    design = _design(rng, 60, terms, dense_q, p)
    theta = _theta(rng, design)
    w = rng.uniform(0.2, 3.0, 60) if weighted else np.ones(60)
    ix = ReIndex.from_design(design)
    cp = crossproducts(ix, z_lambda(design, theta), w, design.X, design.y)
    sol = solve_pls(cp, ix.q1, float(w @ design.y**2), None)
    dense = linalg.DenseSystem.from_design(design, w, design.y)
    np.testing.assert_allclose(dense.profiled_terms(theta), (sol.ldL2, sol.ldRX2, sol.pwrss),
                               rtol=1e-9)
