"""Penalized iteratively reweighted least squares (PIRLS) for GLMMs.

For fixed ``theta`` (and ``beta``, unless ``joint``) PIRLS finds the conditional
mode ``u*`` minimising the penalized deviance

    pdev(u) = sum_i d(y_i, mu_i) + ||u||^2,   mu = g^{-1}(offset + X beta + Z Lambda u),

by Fisher scoring steps on the weighted penalized least-squares problem with
working weights ``w = wt mu_eta^2 / V(mu)``, halving a step while it does not
decrease ``pdev`` (lme4's ``pwrssUpdate``). Iteration stops when the scoring
increment is below ``tol`` (relative); the factor ``L`` returned is the one at
``u*``. Newton's quadratic convergence makes the Laplace value's error of the
order of the last increment: ``tol = 1e-12`` gives values smooth enough for
finite-difference Hessians; ``1e-7`` is enough while optimising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmmbench.engine.linalg import BlockedCholesky, ReIndex, crossproducts, factorize
from glmmbench.families.response import GLMResponse, WorkingValues

__all__ = ["PIRLSResult", "PIRLSFailure", "pirls", "checked_factor"]

MAX_HALVINGS = 20


class PIRLSFailure(ArithmeticError):
    """PIRLS could not proceed: a start outside the link's domain, or a factor that
    is not positive definite (negative working weights)."""


@dataclass(frozen=True)
class PIRLSResult:
    u: np.ndarray
    beta: np.ndarray
    working: WorkingValues
    fac: BlockedCholesky
    pdev: float
    iterations: int
    converged: bool

    @property
    def ldL2(self) -> float:
        return self.fac.logdet_Z()


def _pdev(resp: GLMResponse, wv: WorkingValues, u: np.ndarray) -> float:
    return resp.deviance_at(wv) + float(u @ u)


def pirls(ix: ReIndex, V: list[np.ndarray], X: np.ndarray, resp: GLMResponse,
          beta: np.ndarray | None, u: np.ndarray | None, *, joint: bool,
          tol: float = 1e-12, maxit: int = 50) -> PIRLSResult:
    """Run PIRLS from ``(u, beta)``; with ``joint`` also update ``beta``.

    Raises ``PIRLSFailure`` when the start lies outside the link's domain or a
    factorization fails; the caller restarts from a safe point.
    """
    u = np.zeros(ix.m) if u is None else u
    beta = np.zeros(X.shape[1]) if beta is None else beta
    off = resp.offset
    fixed = off + X @ beta  # offset + X beta, constant unless ``joint``
    eta = fixed + ix.Zu(V, u)
    wv = resp.working(eta)
    valid = resp.valid

    if not valid(eta, wv.mu):
        raise PIRLSFailure("PIRLS start lies outside the link's domain")
    pdev = _pdev(resp, wv, u)

    converged = False
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007
        # working response: for joint updates of (u, beta) it includes X beta
        z = eta - (off if joint else fixed) + wv.wres
        cp = crossproducts(ix, *resp.whitened(wv, V, X if joint else None, z))
        fac = checked_factor(cp, ix.q1)
        c1, c2, cX = fac.forward(cp.r1, cp.r2, cp.rX if joint else None)
        u_new, beta_new = fac.backward(c1, c2, cX)
        du = u_new - u
        db = (beta_new - beta) if joint else np.zeros_like(beta)
        step = max(np.max(np.abs(du), initial=0.0), np.max(np.abs(db), initial=0.0))
        # each block relative to its own size: beta carries the units of the linear
        # predictor (1e7 for a Gamma inverse-link response in units of 1e-8), u does not
        if (np.max(np.abs(du), initial=0.0) < tol * (1.0 + np.max(np.abs(u), initial=0.0))
                and np.max(np.abs(db), initial=0.0)
                < tol * (1.0 + np.max(np.abs(beta), initial=0.0))):
            converged = True
            break
        s = 1.0
        for _ in range(MAX_HALVINGS):
            u_try = u + s * du
            b_try = beta + s * db
            eta_try = (off + X @ b_try if joint else fixed) + ix.Zu(V, u_try)
            wv_try = resp.working(eta_try)
            if not valid(eta_try, wv_try.mu):
                # as R's glm.fit: from a valid eta, halve until eta stays in the domain
                s /= 2.0
                continue
            pdev_try = _pdev(resp, wv_try, u_try)
            if np.isfinite(pdev_try) and pdev_try <= pdev + 1e-12 * abs(pdev):
                break
            s /= 2.0
        else:
            # no decrease along the scoring direction: at the mode to working
            # precision, unless the step was large (a degenerate problem)
            converged = step < 1e-6 * (1.0 + np.max(np.abs(u), initial=0.0))
            break
        u, beta, eta, wv, pdev = u_try, b_try, eta_try, wv_try, pdev_try
    else:
        # iteration limit (e.g. separation: beta diverges): the factor at the last iterate
        z = eta - (off if joint else fixed) + wv.wres
        fac = checked_factor(crossproducts(ix, *resp.whitened(wv, V, X if joint else None, z)),
                             ix.q1)
    return PIRLSResult(u, beta, wv, fac, float(pdev), it, converged)


def checked_factor(cp, q1: int) -> BlockedCholesky:
    """``factorize``, with a failure (not positive definite) raised as PIRLSFailure."""
    try:
        fac = factorize(cp, q1)
    except np.linalg.LinAlgError as err:
        raise PIRLSFailure(f"PIRLS factorization failed: {err}") from err
    if not np.isfinite(fac.logdet_Z()):
        raise PIRLSFailure("PIRLS factorization failed: negative or non-finite weights")
    return fac
