"""Optimisation of a deviance function: lme4's strategy, BOBYQA, OptSummary.

LMM: one stage, ``min_theta f(theta)`` (profiled deviance).
GLMM (lme4's ``glmer``): stage 1 minimises the Laplace deviance over ``theta``
with ``beta`` updated inside PIRLS; stage 2 minimises it over ``(theta, beta)``
from stage 1's optimum. Both stages use derivative-free BOBYQA (Powell 2009),
the optimizer of lme4 and MixedModels.jl, from nlopt, with ``theta``'s diagonal
elements bounded below by 0; where the deviance has an analytic gradient (large
LMMs; canonical binomial and Poisson GLMMs) scipy's L-BFGS-B (``lbfgsb``) takes
far fewer evaluations to the same optimum.

After the optimum, ``derivatives`` takes central finite differences (as lme4's
``deriv12``) for the convergence checks and the Hessian-based ``vcov`` of GLMMs;
``derivatives_from_gradient`` differences the analytic gradient instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nlopt
import numpy as np

__all__ = ["OptSummary", "bobyqa", "lbfgsb", "gradient", "derivatives",
           "derivatives_from_gradient", "hessian_columns", "newton_polish",
           "check_convergence", "convergence_checks", "convergence_verdict"]

SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4)
GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance
MAX_EIGENVALUE_RATIO = 1e6  # lme4's check.conv.hess: relTol


@dataclass
class OptSummary:
    """What the optimizer did (after MixedModels.jl's OptSummary)."""

    optimizer: str
    initial: np.ndarray
    lower: np.ndarray
    initial_step: np.ndarray
    ftol_rel: float
    ftol_abs: float
    xtol_abs: float
    maxfeval: int
    final: np.ndarray = field(default_factory=lambda: np.empty(0))
    fmin: float = np.inf
    feval: int = 0
    returnvalue: str = ""
    time_s: float = 0.0
    fitlog: list[tuple[int, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "optimizer": self.optimizer,
            "initial": self.initial.tolist(),
            "final": self.final.tolist(),
            "fmin": self.fmin,
            "feval": self.feval,
            "returnvalue": self.returnvalue,
            "ftol_rel": self.ftol_rel,
            "ftol_abs": self.ftol_abs,
            "xtol_abs": self.xtol_abs,
            "time_s": self.time_s,
        }


_RETURN = {
    nlopt.SUCCESS: "SUCCESS", nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED", nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED", nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}


def bobyqa(f: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, *,
           upper: np.ndarray | None = None, initial_step: np.ndarray | None = None,
           ftol_rel: float = 1e-12, ftol_abs: float = 1e-8, xtol_abs: float = 1e-10,
           maxfeval: int = 10_000, name: str = "LN_BOBYQA") -> OptSummary:
    """Minimise ``f`` from ``x0`` subject to ``lower <= x <= upper`` with nlopt's BOBYQA.

    Non-finite objective values are mapped to ``+inf``-like large values so
    that BOBYQA backs off instead of stopping.
    """
    upper = np.full(len(lower), np.inf) if upper is None else np.asarray(upper, dtype=float)
    x0 = np.minimum(np.maximum(np.asarray(x0, dtype=float), lower), upper)
    k = x0.size
    step = (np.where(np.isfinite(lower), 0.75, 0.5) if initial_step is None
            else np.asarray(initial_step, dtype=float))
    summ = OptSummary(name, x0.copy(), lower.copy(), step.copy(), ftol_rel, ftol_abs,
                      xtol_abs, maxfeval)
    best = [np.inf, x0.copy()]

    def objective(x, grad):
        val = float(f(x))
        summ.feval += 1
        if not np.isfinite(val):
            val = 1e300
        if val < best[0]:
            best[0], best[1] = val, x.copy()
        summ.fitlog.append((summ.feval, val))
        return val

    opt = nlopt.opt(getattr(nlopt, name), k)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -np.inf))
    opt.set_upper_bounds(np.where(np.isfinite(upper), upper, np.inf))
    opt.set_ftol_rel(ftol_rel)
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(maxfeval)
    opt.set_initial_step(step)
    t0 = time.perf_counter()
    try:
        xmin = opt.optimize(x0)
        summ.returnvalue = _RETURN.get(opt.last_optimize_result(), "UNKNOWN")
        fmin = opt.last_optimum_value()
    except nlopt.RoundoffLimited:
        xmin, fmin = best[1], best[0]
        summ.returnvalue = "ROUNDOFF_LIMITED"
    if best[0] < fmin:
        xmin, fmin = best[1], best[0]
    summ.final = np.asarray(xmin, dtype=float)
    summ.fmin = float(fmin)
    summ.time_s = time.perf_counter() - t0
    return summ


def lbfgsb(f: Callable[[np.ndarray], float], grad: Callable[[np.ndarray], np.ndarray],
           x0: np.ndarray, lower: np.ndarray, *, upper: np.ndarray | None = None,
           ftol_rel: float = 1e-12, gtol: float = 1e-6, maxfeval: int = 10_000
           ) -> OptSummary:
    """Minimise ``f`` with its gradient by scipy's L-BFGS-B within ``lower`` and
    ``upper`` (default ``+inf``); the summary counts evaluations of ``f`` (each with
    one of ``grad``)."""
    from scipy.optimize import minimize

    upper = np.full(len(lower), np.inf) if upper is None else np.asarray(upper, dtype=float)
    x0 = np.minimum(np.maximum(np.asarray(x0, dtype=float), lower), upper)
    summ = OptSummary("L-BFGS-B", x0.copy(), lower.copy(), np.zeros(x0.size), ftol_rel,
                      np.nan, np.nan, maxfeval)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        val = float(f(x))
        summ.feval += 1
        summ.fitlog.append((summ.feval, val))
        if not np.isfinite(val):
            return 1e300, np.zeros(x.size)
        return val, grad(x)

    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
              for lo, hi in zip(lower, upper, strict=True)]
    t0 = time.perf_counter()
    res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": ftol_rel, "gtol": gtol, "maxfun": maxfeval})
    summ.final = np.asarray(res.x, dtype=float)
    summ.fmin = float(res.fun)
    summ.returnvalue = "SUCCESS" if res.success else "UNKNOWN"
    summ.time_s = time.perf_counter() - t0
    return summ


POLISH_ROUNDING = 1e-12  # relative change of f that counts as rounding in newton_polish


def gradient(f: Callable[[np.ndarray], float], x: np.ndarray, delta: float = 1e-4
             ) -> np.ndarray:
    """Central finite-difference gradient."""
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = delta
        g[i] = (f(x + e) - f(x - e)) / (2 * delta)
    return g


def newton_polish(f: Callable[[np.ndarray], float], x: np.ndarray, fx: float,
                  grad: np.ndarray, hess: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray | None = None,
                  gradient_of: Callable[[np.ndarray], np.ndarray] | None = None,
                  fixed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """One Newton step from a derivative-free optimum, kept if it lowers ``f``, or if
    ``f`` stays within rounding (``POLISH_ROUNDING`` relative) and the gradient shrinks.

    BOBYQA stops on a small change in ``f``; along poorly scaled directions the
    gradient can still exceed lme4's convergence tolerance, and near the optimum
    ``f`` is flat to rounding, so the gradient decides (MixedModels.jl's sharp
    optimum). Parameters on their lower bound with a positive gradient stay there, and
    so do the ``fixed`` ones (a family parameter at a limit of the model).
    Returns ``(x, f(x), gradient at x, moved)``; the Hessian is reused. The gradient
    at the new point is ``gradient_of`` (analytic) if given, else central differences.
    """
    upper = np.full(x.size, np.inf) if upper is None else upper
    free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
    if fixed is not None:  # parameters at a limit of the model stay where they are
        free &= ~fixed
    if not (np.any(free) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return x, fx, grad, False
    try:
        step = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
    except np.linalg.LinAlgError:
        return x, fx, grad, False
    x_new = x.copy()
    x_new[free] -= step
    x_new = np.minimum(np.maximum(x_new, lower), upper)
    f_new = f(x_new)
    if not np.isfinite(f_new) or f_new > fx + POLISH_ROUNDING * max(1.0, abs(fx)):
        return x, fx, grad, False
    g_new = gradient(f, x_new) if gradient_of is None else gradient_of(x_new)
    if f_new < fx or np.linalg.norm(g_new[free]) < np.linalg.norm(grad[free]):
        return x_new, f_new, g_new, True
    return x, fx, grad, False


def derivatives(f: Callable[[np.ndarray], float], x: np.ndarray, fx: float,
                delta: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of ``f`` at ``x`` by central finite differences (step
    ``delta``, lme4's ``deriv12``): gradient ``(f(x + d e_i) - f(x - d e_i)) / 2d``,
    diagonal ``(f(x + d e_i) - 2 f(x) + f(x - d e_i)) / d^2``, off-diagonal
    ``(f(x + d e_i + d e_j) - f(x + d e_i - d e_j) - f(x - d e_i + d e_j)
    + f(x - d e_i - d e_j)) / 4 d^2``. All three are second-order accurate; the
    one-sided off-diagonal ``(f(x + d e_i + d e_j) - f(x + d e_i) - f(x + d e_j) +
    f(x)) / d^2`` used before is first-order, and on lme4's nAGQ = 21 test model
    (lme4 issue 47) it put the SEs 1.8e-5 from the exact Hessian's (Richardson
    extrapolation), this formula 5e-7.
    """
    k = x.size
    fp, fm = np.empty(k), np.empty(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = delta
        fp[i], fm[i] = f(x + e), f(x - e)
    grad = (fp - fm) / (2 * delta)
    H = np.diag((fp - 2 * fx + fm) / delta**2)
    for i in range(k):
        for j in range(i):
            ei, ej = np.zeros(k), np.zeros(k)
            ei[i], ej[j] = delta, delta
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                 + f(x - ei - ej)) / (4 * delta**2)
    return grad, H


def derivatives_from_gradient(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                              delta: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """The gradient at ``x`` and the Hessian by forward differences of the gradient,
    symmetrised: ``k + 1`` evaluations instead of ``derivatives``' ``k (k + 3) / 2``.

    The error is of order ``delta`` times the third derivatives (relative 1e-5 for
    unit-scale parameters) plus the gradient's own error over ``delta``; an
    analytic gradient at PIRLS's tight tolerance keeps the second below the first.
    (Central differences halve neither: they double the evaluations for an error
    far below what the standard errors are compared at.)"""
    g = grad(x)
    H = hessian_columns(grad, x, x.size, delta, g)
    return g, 0.5 * (H + H.T)


def hessian_columns(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, k: int,
                    delta: float, g: np.ndarray) -> np.ndarray:
    """The Hessian's first ``k`` columns by forward differences of ``grad``, whose value
    at ``x`` is ``g``: ``(x.size, k)``, ``k`` calls."""
    H = np.empty((x.size, k))
    for i in range(k):
        e = np.zeros(x.size)
        e[i] = delta
        H[:, i] = (grad(x + e) - g) / delta
    return H


def convergence_checks(theta: np.ndarray, theta_lower: np.ndarray, grad: np.ndarray,
                       hess: np.ndarray, at_limit: np.ndarray | None = None
                       ) -> dict[str, Any]:
    """lme4's convergence checks as data (``check_convergence`` words them).

    - ``singular``: indices of theta's bounded elements at their bound (``< SINGULAR_TOL``);
    - ``finite``: whether the gradient and Hessian (without those elements) are finite;
    - ``gradient``: the largest of lme4's per-component ``min(|R^{-1} g|, |g|)`` with
      ``H = R'R`` (None when H has no Cholesky factor), ``gradient_component`` its index;
    - ``negative_eigenvalues`` of that Hessian, and its ``eigenvalue_ratio``;
    - ``nchecked``: how many parameters those derivatives are over.

    ``at_limit`` (boolean, one per parameter) marks parameters whose estimate is a
    limit of the model (a t's df -> infinity): the likelihood is flat along them, so
    their derivatives are not checked either, as a variance at its boundary.
    """
    diag = np.isfinite(theta_lower)
    boundary = diag & (np.abs(theta) < SINGULAR_TOL)
    out: dict[str, Any] = {"singular": np.flatnonzero(boundary).tolist(), "finite": True,
                           "gradient": None, "gradient_component": None,
                           "negative_eigenvalues": 0, "eigenvalue_ratio": None}
    # derivatives with respect to parameters on the boundary are not checked
    keep = ~np.concatenate([boundary, np.zeros(grad.size - theta.size, dtype=bool)])
    if at_limit is not None:
        keep &= ~np.asarray(at_limit, dtype=bool)
    g, H = grad[keep], hess[np.ix_(keep, keep)]
    out["nchecked"] = int(g.size)
    if g.size == 0:
        return out
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
        out["finite"] = False
        return out
    eig = np.linalg.eigvalsh(H)
    out["negative_eigenvalues"] = int(np.sum(eig < 0))
    if eig[0] > 0:
        out["eigenvalue_ratio"] = float(eig[-1] / eig[0])
    try:
        # lme4: solve(chol(H), g) with chol(H) the upper factor R, H = R'R
        R = np.linalg.cholesky(H).T
        scaled = np.linalg.solve(R, g)
        if np.all(np.isfinite(scaled)):
            # lme4: the smaller of the scaled and the raw gradient, component by component
            mingrad = np.minimum(np.abs(scaled), np.abs(g))
            out["gradient"] = float(np.max(mingrad))
            out["gradient_component"] = int(np.argmax(mingrad))
    except np.linalg.LinAlgError:
        pass
    return out


def check_convergence(theta: np.ndarray, theta_lower: np.ndarray, grad: np.ndarray,
                      hess: np.ndarray) -> tuple[bool, list[str]]:
    """lme4's convergence checks (`convergence_checks`) in lme4's words: singular fit,
    scaled gradient, Hessian.

    Returns ``(converged, messages)``; a singular fit is reported but does not
    count as a failure to converge (as in lme4).
    """
    return convergence_verdict(convergence_checks(theta, theta_lower, grad, hess),
                               grad.size)


def convergence_verdict(c: dict[str, Any], nparams: int) -> tuple[bool, list[str]]:
    """``(converged, messages)`` from `convergence_checks` over ``nparams`` parameters."""
    messages: list[str] = []
    if c["singular"]:
        messages.append("boundary (singular) fit: see help('isSingular')")
    if not c["finite"]:
        messages.append("Model failed to converge: the deviance is not finite near the "
                        "optimum, so its gradient and Hessian cannot be evaluated")
        return False, messages
    converged = True
    if c["gradient"] is not None:
        if c["gradient"] > GRAD_TOL:
            converged = False
            messages.append(f"Model failed to converge with max|grad| = {c['gradient']:.6g} "
                            f"(tol = {GRAD_TOL}, component {c['gradient_component'] + 1})")
        if c["eigenvalue_ratio"] is not None and c["eigenvalue_ratio"] > MAX_EIGENVALUE_RATIO:
            messages.append("Model is nearly unidentifiable: very large eigenvalue ratio "
                            f"({c['eigenvalue_ratio']:.3g}) - rescale variables?")
    elif c["negative_eigenvalues"]:
        converged = False
        messages.append("Model failed to converge: degenerate Hessian with "
                        f"{c['negative_eigenvalues']} negative eigenvalues")
    elif nparams > len(c["singular"]):
        messages.append("Hessian is numerically singular: parameters are not "
                        "uniquely determined")
    return converged, messages
