"""fit(): the stages chained, nothing else.

    design  = build_design(formula, data, family, weights=..., offset=...)
    devfun  = make_devfun(design, response, nagq, reml)
    opt     = optimize_lmm(devfun) | optimize_glmm(devfun)
    result  = make_result(design, family, devfun, opt, ...)

Each stage can be called on its own (lme4's ``modular.R``); a test shows the
manual chain equals the one-line call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
from threadpoolctl import ThreadpoolController

from glmmbench.engine.deviance import GLMMDevfun, LMMDevfun, make_devfun, z_lambda
from glmmbench.engine.linalg import crossproducts, factorize
from glmmbench.engine.optimize import (
    GRAD_TOL,
    OptSummary,
    bobyqa,
    convergence_checks,
    convergence_verdict,
    derivatives,
    derivatives_from_gradient,
    hessian_columns,
    lbfgsb,
    newton_polish,
)
from glmmbench.engine.separation import detect_separation
from glmmbench.errors import GLMMError, NumericalError
from glmmbench.families import ResponseFamily, make_family, make_response
from glmmbench.families.glm import EPS
from glmmbench.families.ordinal import THRESHOLDS
from glmmbench.model.design import Design, build_design, check_response_varies
from glmmbench.model.theta import theta_start
from glmmbench.results import GLMMResult, make_result

__all__ = ["fit", "optimize_lmm", "optimize_glmm", "optimum_derivatives", "finish_fit",
           "refit_ml", "DEFAULT_CONTROL"]

# PIRLS tolerances: loose while BOBYQA searches, tight for finite differences
PIRLS_TOL_OPT = 1e-7
PIRLS_TOL_DERIVS = 1e-12
PIRLS_TOL_GRADIENT = 1e-10  # with the analytic gradient, whose error follows PIRLS's
STAGE1_FTOL_REL = 1e-7  # stage 1 with the gradient (L-BFGS-B): a start for stage 2
POLISH_ROUNDS = 3  # Newton polish steps at most, while lme4's gradient check fails
RESTART_STEP = 0.02  # BOBYQA's first step when it searches again from a polished point
STEP_RESPONSE = 0.25  # stage 2's first step for a response's parameters (tried 0.1, 0.5)

DEFAULT_CONTROL: dict[str, Any] = {
    # LMM: MixedModels.jl's tolerances
    "lmm_ftol_rel": 1e-12, "lmm_ftol_abs": 1e-8, "lmm_xtol_abs": 1e-10,
    # LMMs with at least this many random effects use the analytic gradient and
    # L-BFGS-B; below it BOBYQA's cheap evaluations win (measured: sleepstudy 10 ms
    # against 14 ms; InstEval, 4128 effects, 5.8 s against 3.1 s)
    "lmm_gradient_effects": 1000,
    # GLMM stage 1 only supplies starting values; stage 2 decides the optimum
    "stage1_ftol_abs": 1e-2, "ftol_rel": 1e-12, "ftol_abs": 1e-6, "xtol_abs": 1e-8,
    "maxfeval": 10_000,
    "calc_derivs": True,  # finite-difference gradient/Hessian (checks, GLMM vcov)
}


def _control(control: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULT_CONTROL`` updated by ``control`` (a dict), each option checked: a
    `GLMMError` names the option and the value it cannot take."""
    out = dict(DEFAULT_CONTROL)
    if control is None:
        return out
    if not isinstance(control, Mapping):
        raise GLMMError(f"control must be a dict of options (e.g. {{'maxfeval': 20000}}), "
                        f"not {type(control).__name__} {control!r}; valid options: "
                        f"{', '.join(out)}")
    for key, value in control.items():
        if key not in out:
            raise GLMMError(f"unknown control option {key!r}; valid: {', '.join(out)}")
        default = DEFAULT_CONTROL[key]
        if isinstance(default, bool):
            if not isinstance(value, bool | np.bool_):
                raise GLMMError(f"control option {key!r} must be True or False, not {value!r}")
            out[key] = bool(value)
            continue
        if (not isinstance(value, int | float | np.integer | np.floating)
                or isinstance(value, bool | np.bool_) or not 0 < value < float("inf")):
            raise GLMMError(f"control option {key!r} must be a finite positive number, "
                            f"not {value!r}")
        if isinstance(default, int) and (value != int(value) or value > 2**31 - 1):
            raise GLMMError(f"control option {key!r} must be a whole number up to "
                            f"{2**31 - 1}, not {value!r}")
        out[key] = type(default)(value)
    return out


def optimize_lmm(devfun: LMMDevfun, control: Mapping[str, Any] | None = None) -> OptSummary:
    """Minimise the profiled (RE)ML deviance over ``theta``."""
    ctl = _control(control)
    if devfun.ix.m >= ctl["lmm_gradient_effects"]:
        return _optimize_lmm_gradient(devfun, ctl)
    return _restart_inside(devfun, ctl, _bobyqa_lmm(devfun, ctl))


def _restart_inside(devfun: LMMDevfun, ctl: Mapping[str, Any], opt: OptSummary
                    ) -> OptSummary:
    """BOBYQA again from inside when a search ends with a variance at 0, the better
    optimum kept.

    A singular optimum of an unstructured covariance is a face of the Cholesky
    parametrisation, and a search can stop on a face that is not the best one: on
    a 4 x 4 ``(o | g)`` with two variances near 0 BOBYQA stopped 0.005 to 0.054
    below lme4's optimum, on one coding of the factor or the other (an ordered
    factor's polynomial contrasts against the same factor's treatment contrasts:
    the same model). From the face with the zero diagonal entries set to half the
    largest theta it reaches lme4's optimum on both codings.
    """
    zero = np.isfinite(devfun.lower) & (opt.final <= devfun.lower + 1e-6)
    if not np.any(zero):
        return opt
    start = opt.final.copy()
    start[zero] = 0.5 * max(float(np.max(np.abs(opt.final))), 0.2)
    again = _bobyqa_lmm(devfun, ctl, start)
    again.feval += opt.feval
    if again.fmin < opt.fmin - 1e-10:
        again.initial = opt.initial
        return again
    opt.feval = again.feval
    devfun(opt.final)  # leave the devfun at the optimum kept
    return opt


def _optimize_lmm_gradient(devfun: LMMDevfun, ctl: Mapping[str, Any]) -> OptSummary:
    """The analytic gradient (``LMMDevfun.gradient``) and L-BFGS-B take far fewer
    evaluations than BOBYQA (InstEval: 112 -> 21; ``lmm_gradient_effects``).

    The deviance is even in each theta_k, so its gradient vanishes at theta_k = 0
    whether 0 is a minimum or a maximum along it, and L-BFGS-B can stop there (seen
    with gamSim(6): a smooth's variance at 1e-11, deviance 0.46 above the optimum
    at 0.016). When a theta ends at 0, the deviance is probed a little inside
    (``ZERO_PROBE``): where it is lower there, 0 is not a minimum along it, and
    BOBYQA searches from the probe; the better optimum is kept. (BOBYQA from the
    start each time doubled the cost of singular fits.)
    """
    opt = log_scale_lbfgsb(devfun, devfun.gradient, theta_start(devfun.blocks), devfun.lower,
                           ftol_rel=ctl["lmm_ftol_rel"], maxfeval=ctl["maxfeval"])
    zero = np.isfinite(devfun.lower) & (opt.final <= devfun.lower + 1e-6)
    if np.any(zero):
        opt.fmin = devfun(opt.final)
        opt.feval += 1
        for i in np.flatnonzero(zero):
            probe = opt.final.copy()
            probe[i] = ZERO_PROBE * max(1.0, float(np.max(np.abs(opt.final))))
            opt.feval += 1
            if devfun(probe) < opt.fmin:
                other = _bobyqa_lmm(devfun, ctl, probe)
                other.feval += opt.feval
                if other.fmin <= opt.fmin:
                    opt = other
                else:
                    opt.feval = other.feval
                break
    devfun(opt.final)  # leave the devfun at the optimum kept
    return opt


def _bobyqa_lmm(devfun: LMMDevfun, ctl: Mapping[str, Any],
                start: np.ndarray | None = None) -> OptSummary:
    start = theta_start(devfun.blocks) if start is None else start
    return bobyqa(devfun, start, devfun.lower, ftol_rel=ctl["lmm_ftol_rel"],
                  ftol_abs=ctl["lmm_ftol_abs"], xtol_abs=ctl["lmm_xtol_abs"],
                  maxfeval=ctl["maxfeval"])


def optimize_glmm(devfun: GLMMDevfun,
                  control: Mapping[str, Any] | None = None) -> tuple[OptSummary, OptSummary]:
    """lme4's two stages; returns both OptSummaries (stage 2 is the fit).

    The searches run in units of the parameters (``GLMMDevfun.param_scale``: theta over
    the linear predictor's units, which are 1 except for Gaussian and Gamma responses
    with an identity, inverse or sqrt link), lme4's theta start being 1 in those units,
    on the deviance less the constant that only the units of y make
    (``GLMMDevfun.units_deviance``), to which the relative tolerances apply: a fit does
    not depend on the units of y.
    """
    ctl = _control(control)
    k = devfun.ncov
    D = devfun.param_scale[:k]  # theta = D theta'
    c = devfun.units_deviance
    lower_theta, upper_theta = devfun.lower[:k] / D, devfun.upper[:k] / D
    gradient = devfun.has_gradient

    def stage1(z: np.ndarray) -> float:
        return devfun.stage1(D * z) - c

    if gradient:
        s1 = log_scale_lbfgsb(_keep_best(devfun, stage1),
                              lambda z: D * devfun.stage1_gradient(D * z),
                              devfun.cov_start(), lower_theta, upper=upper_theta,
                              ftol_rel=STAGE1_FTOL_REL, maxfeval=ctl["maxfeval"])
        # PIRLS failed wherever the gradient led (a curvature factor that is not
        # positive definite): the derivative-free search steps around such points
        gradient = bool(np.isfinite(s1.fmin) and s1.fmin < 1e300 and devfun.last is not None)
    if not gradient:
        s1 = bobyqa(_keep_best(devfun, stage1), devfun.cov_start(), lower_theta,
                    upper=upper_theta, ftol_rel=1e-8, ftol_abs=ctl["stage1_ftol_abs"],
                    xtol_abs=1e-6, maxfeval=ctl["maxfeval"])
    _require_pirls(devfun)
    beta1 = devfun.last.beta
    nt = devfun.ntheta
    # Stage 2 works in whitened coordinates gamma, beta = beta1 + R_X^{-1} gamma with
    # R_X from stage 1's joint factor: the deviance's beta-block is then close to
    # 2 I, which BOBYQA handles far better than raw, often collinear, coefficients.
    # An ordinal response's threshold shift is an intercept (eta's, with sign -1),
    # as collinear with uncentred columns of X: it is whitened with beta.
    shift = getattr(devfun.response, "shift_param", None)
    if shift is None:
        LXX = devfun.last.fac.LXX
        center, free = beta1, np.arange(k)
    else:
        i = nt + shift
        X1 = np.column_stack([-np.ones(devfun.design.n), devfun.design.X])
        cp = crossproducts(devfun.ix, z_lambda(devfun.design, D[:nt] * s1.final[:nt]),
                           devfun.last.working.w, X1, None)
        LXX = factorize(cp, devfun.ix.q1).LXX
        center, free = np.concatenate([s1.final[i:i + 1], beta1]), np.delete(np.arange(k), i)
    kf = free.size

    def to_params(x: np.ndarray) -> np.ndarray:
        c = center + sla.solve_triangular(LXX, x[kf:], lower=True, trans="T")
        cov = D[free] * x[:kf]
        if shift is None:
            return np.concatenate([cov, c])
        return np.concatenate([np.insert(cov, shift + nt, c[0]), c[1:]])

    def f2(x: np.ndarray) -> float:
        return devfun(to_params(x)) - c

    f2 = _keep_best(devfun, f2)

    x0 = np.concatenate([s1.final[free], np.zeros(center.size)])
    lower = np.concatenate([lower_theta[free], np.full(center.size, -np.inf)])
    upper = np.concatenate([upper_theta[free], np.full(center.size, np.inf)])
    nfd = 0
    if gradient:
        # the analytic gradient (GLMMDevfun.gradient) in the whitened coordinates:
        # d beta / d x = LXX^{-T}, so the beta part is LXX^{-1} g_beta
        def g2(x: np.ndarray) -> np.ndarray:
            g = devfun.gradient(to_params(x))
            g_center = g[k:] if shift is None else np.concatenate([g[nt + shift:nt + shift + 1],
                                                                    g[k:]])
            return np.concatenate([(D * g[:k])[free],
                                   sla.solve_triangular(LXX, g_center, lower=True)])

        # the envelope theorem needs the mode: PIRLS to the tighter tolerance
        devfun.tol = PIRLS_TOL_GRADIENT

        def search(start: np.ndarray) -> OptSummary:
            return _preconditioned_lbfgsb(f2, g2, start, lower, upper, kf, ctl["ftol_rel"],
                                          ctl)

    def derivative_free() -> tuple[Callable[[np.ndarray], OptSummary], int]:
        # theta: a quarter of its value (at least 0.05); the response's parameters (a
        # log-dispersion, thresholds) are on unit scales: 0.25; whitened beta: 1 ...
        default = np.concatenate([np.maximum(0.25 * np.maximum(s1.final[:nt], 0.1), 0.05),
                                  np.full(k - nt, STEP_RESPONSE)])[free]
        # ... or less: one standard deviation where the curvature at the start says so
        # (variances, dispersions and threshold gaps are often far sharper). Measured:
        # stage 2 on binomial (1 + x | g), n = 1e5, 83 -> 41 evaluations; NB2 crossed
        # 65 -> 34
        step, n = _curvature_steps(f2, x0, default, lower)
        step = np.concatenate([step, np.ones(center.size)])

        def search(start: np.ndarray) -> OptSummary:
            return bobyqa(f2, start, lower, upper=upper, initial_step=step,
                          ftol_rel=ctl["ftol_rel"], ftol_abs=ctl["ftol_abs"],
                          xtol_abs=ctl["xtol_abs"], maxfeval=ctl["maxfeval"])

        return search, n

    if not gradient:
        search, nfd = derivative_free()
    s2 = search(x0)
    if gradient and not (np.isfinite(s2.fmin) and s2.fmin < 1e299):
        # PIRLS failed wherever the gradient search went (a link whose predictor must
        # stay in its domain: identity, sqrt, inverse): the derivative-free search
        # steps around such points
        search, nfd = derivative_free()
        nfd += s2.feval
        s2 = search(x0)
    s2.feval += nfd
    # A variance that reached 0 may be a true boundary optimum or a point BOBYQA
    # could not leave (seen with multinomial category effects, whose correlated
    # optimum depends on the category order): search again from inside, keep the better.
    zero = np.isfinite(lower[:nt]) & (s2.final[:nt] <= lower[:nt] + 1e-6)
    if np.any(zero):
        restart = s2.final.copy()
        restart[:nt][zero] = 0.5 * max(float(np.max(np.abs(s2.final[:nt]))), 0.2)
        again = search(restart)
        again.feval += s2.feval
        if again.fmin < s2.fmin - 1e-8:
            s2 = again
        else:
            s2.feval = again.feval
            f2(s2.final)
    s1.initial, s1.lower, s1.final = D * s1.initial, D * s1.lower, D * s1.final
    for summary in (s1, s2):  # the deviance itself
        summary.fmin += c
        summary.fitlog = [(i, v + c) for i, v in summary.fitlog]
    s2.initial = np.concatenate([s1.final, beta1])
    s2.final = to_params(s2.final)
    return s1, s2


ZERO_PROBE = 1e-3  # where a theta that ends at 0 is probed (relative to the largest)
LOG_FLOOR = 1e-5  # log_scale_lbfgsb's smallest standard deviation: "at 0"


def log_scale_lbfgsb(f, grad, x0: np.ndarray, lower: np.ndarray, *, ftol_rel: float,
                     maxfeval: int, upper: np.ndarray | None = None) -> OptSummary:
    """L-BFGS-B with the coordinates bounded below by 0 (the variances' theta) on the
    log scale, ``theta = exp(phi)``, ``phi >= log(LOG_FLOOR)``; the others (within
    ``lower`` and ``upper``) as they are. The summary is in ``x``.

    From lme4's start (theta = 1) the first steps along the gradient overshoot on the
    linear scale, where the deviance rises steeply towards 0 and flattens beyond the
    optimum; on the log scale it is closer to a quadratic. Measured: InstEval 21 -> 15
    evaluations; stage 1 of binomial ``(1 + x | g)``, n = 1e5, 15 -> 9. A theta that
    ends at the floor is at 0 for the callers' boundary checks (they search again
    on the linear scale).
    """
    logs = (lower == 0) & (x0 > LOG_FLOOR)
    upper = np.full(x0.size, np.inf) if upper is None else upper

    def to_x(y: np.ndarray) -> np.ndarray:
        x = y.copy()
        x[logs] = np.exp(y[logs])
        return x

    def g(y: np.ndarray) -> np.ndarray:
        gy = np.asarray(grad(to_x(y)), dtype=float).copy()
        gy[logs] *= np.exp(y[logs])
        return gy

    y0 = x0.copy()
    y0[logs] = np.log(x0[logs])
    ylower = np.where(logs, np.log(LOG_FLOOR), lower)
    yupper = np.where(logs, np.inf, upper)
    opt = lbfgsb(lambda y: f(to_x(y)), g, y0, ylower, upper=yupper, ftol_rel=ftol_rel,
                 maxfeval=maxfeval)
    opt.initial, opt.lower, opt.final = x0.copy(), lower.copy(), to_x(opt.final)
    opt.final[logs & (opt.final <= LOG_FLOOR * (1 + 1e-9))] = 0.0
    return opt


def _preconditioned_lbfgsb(f, grad, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                           k: int, ftol_rel: float, ctl: Mapping[str, Any]) -> OptSummary:
    """L-BFGS-B in the coordinates ``y`` of ``_preconditioner``, ``x = x0 + T y``;
    the summary is in ``x`` and counts the preconditioner's evaluations."""
    T, nfd = _preconditioner(grad, x0, k)
    d = np.diag(T)
    opt = lbfgsb(lambda y: f(x0 + T @ y), lambda y: T.T @ grad(x0 + T @ y),
                 np.zeros(x0.size), (lower - x0) / d, upper=(upper - x0) / d,
                 ftol_rel=ftol_rel, maxfeval=ctl["maxfeval"])
    opt.initial, opt.lower = x0.copy(), lower.copy()
    opt.final = x0 + T @ opt.final
    opt.feval += nfd
    return opt


def _preconditioner(grad, x: np.ndarray, k: int, h: float = 1e-4) -> tuple[np.ndarray, int]:
    """Coordinates for a gradient search from ``x`` whose first ``k`` entries are
    bounded (theta) and whose rest, if any, are whitened beta (Hessian near ``2 I``).

    The Hessian's first k columns, by forward differences of ``grad`` (k + 1 calls),
    give ``x = x0 + T y`` with ``theta = theta0 + D y_theta`` (``D`` scales each theta
    to unit curvature of the Schur complement ``S = H_tt - H_tb H_bt / 2``, so the
    bounds stay a box) and ``beta = beta0 - H_bt D y_theta / 2 + y_beta / sqrt 2``
    (beta follows theta along its conditional optimum). ``y``'s Hessian is then
    near ``blockdiag(D S D, I)``. Measured: stage 2 of binomial ``(1 + x | g)``, n =
    1e5, 35 -> 11 evaluations, these 6 included (at stage 1's start, theta = 1, the
    curvature misleads: there it doubled the evaluations, so stage 1 goes without).
    Returns ``T`` and the number of gradient calls.
    """
    K = x.size
    H = hessian_columns(grad, x, k, h, grad(x))
    Htt = 0.5 * (H[:k] + H[:k].T)
    Hbt = H[k:]
    S = np.diag(Htt - Hbt.T @ Hbt / 2.0)
    d = np.where(np.isfinite(S) & (S > 0), 1.0 / np.sqrt(np.where(S > 0, S, 1.0)), 1.0)
    T = np.eye(K) / np.sqrt(2.0)
    T[:k, :k] = np.diag(d)
    if np.all(np.isfinite(Hbt)):
        T[k:, :k] = -Hbt * d / 2.0
    return T, k + 1


def optimum_derivatives(devfun: LMMDevfun | GLMMDevfun, x: np.ndarray, fx: float):
    """Gradient and Hessian at the optimum ``x`` (``fx = devfun(x)``), then Newton
    polish steps (``newton_polish``) while they move and lme4's gradient check still
    fails, at most ``POLISH_ROUNDS``: central differences of the analytic gradient
    where a GLMM's deviance has one (``GLMMDevfun.has_gradient``), else lme4's
    finite differences of the deviance. The polish step's gradient is analytic
    wherever there is one (every LMM). Without an analytic gradient a check that
    still fails sends BOBYQA, which stops on a small change of the deviance, once
    more from the polished point (binary probit ``(1 + x + z | g)``, 30 groups of
    20: 4 of 60 fits flagged before, only the 2 with a negative Hessian eigenvalue
    after). The differences are taken in the parameters' units (``param_scale``; lme4's
    steps where those are 1). Returns ``(x, fx, grad, hess, moved)``, the derivatives
    with respect to ``x``."""
    glmm = isinstance(devfun, GLMMDevfun)
    analytic = not glmm or devfun.has_gradient
    D = _param_scale(devfun)
    c = devfun.units_deviance if glmm else 0.0
    z, fz, gz, Hz, moved, fails = _polish(devfun, x / D, fx - c, glmm, analytic, D, c)
    if fails and not analytic:
        again = bobyqa(lambda z: devfun(D * z) - c, z, devfun.lower / D,
                       upper=devfun.upper / D, initial_step=np.full(z.size, RESTART_STEP),
                       ftol_rel=1e-14, ftol_abs=1e-10, xtol_abs=1e-10)
        if again.fmin < fz:
            z, fz, gz, Hz, _, _ = _polish(devfun, again.final, again.fmin, glmm, analytic,
                                          D, c)
            moved = True
    return D * z, fz + c, gz / D, Hz / np.outer(D, D), moved


def _param_scale(devfun: LMMDevfun | GLMMDevfun) -> np.ndarray:
    """The parameters' units (`GLMMDevfun.param_scale`; an LMM's are all 1: its theta
    is relative to sigma)."""
    return devfun.param_scale if isinstance(devfun, GLMMDevfun) else np.ones(len(devfun.lower))


def scaled_checks(devfun: LMMDevfun | GLMMDevfun, x: np.ndarray, grad: np.ndarray,
                  hess: np.ndarray) -> dict[str, Any]:
    """lme4's convergence checks (`convergence_checks`) at ``x`` in the parameters'
    units (`_param_scale`): lme4's own where the units are 1, and the same verdict
    whatever the units of y."""
    D = _param_scale(devfun)
    k = devfun.ncov if isinstance(devfun, GLMMDevfun) else len(devfun.lower)
    return convergence_checks(x[:k] / D[:k], devfun.lower[:k] / D[:k], grad * D,
                              hess * np.outer(D, D), at_limit=_at_limit(devfun, x))


def _psi_range(devfun: LMMDevfun | GLMMDevfun) -> slice | None:
    """Where the family's own parameters (a t's df, Tweedie's power) sit in ``x``."""
    resp = getattr(devfun, "response", None)
    npsi = getattr(resp, "npsi", 0)
    if not npsi:
        return None
    start = devfun.ntheta + resp.ndisp
    return slice(start, start + npsi)


def _pin_limits(devfun: LMMDevfun | GLMMDevfun, x: np.ndarray, fx: float
                ) -> tuple[np.ndarray, float]:
    """A family parameter at a limit of the model (a t's df -> infinity) is moved to
    its nearer bound, the limit as the search represents it: the likelihood is flat
    there to ``O(1 / df)``, so searches stop anywhere along it, and the bound makes the
    optimum one point. Kept only if the deviance does not rise by more than rounding
    (it falls, or stays, towards the limit)."""
    mask = _at_limit(devfun, x)
    if mask is None:
        return x, fx
    lower, upper = devfun.lower[mask], devfun.upper[mask]
    pinned = x.copy()
    pinned[mask] = np.where(x[mask] > 0.5 * (lower + upper), upper, lower)
    f_pinned = devfun(pinned)
    if np.isfinite(f_pinned) and f_pinned <= fx + 1e-9 * max(1.0, abs(fx)):
        return pinned, f_pinned
    devfun(x)
    return x, fx


def _at_limit(devfun: LMMDevfun | GLMMDevfun, x: np.ndarray) -> np.ndarray | None:
    """The parameters at a limit of the model (``FamilyDef.psi_boundary``), if any."""
    where = _psi_range(devfun)
    if where is None or devfun.response.psi_limit(x[where]) is None:
        return None
    mask = np.zeros(x.size, dtype=bool)
    mask[where] = True
    return mask


def _polish(devfun, z: np.ndarray, fz: float, glmm: bool, analytic: bool, D: np.ndarray,
            c: float):
    """Derivatives and Newton steps of `optimum_derivatives` in the scaled parameters
    ``z = x / D`` on the deviance less ``c``: ``(z, fz, grad, hess, moved, fails)``,
    ``fails`` whether lme4's gradient check still fails at ``z``."""
    k = devfun.ncov if glmm else len(devfun.lower)

    def f(z: np.ndarray) -> float:
        return devfun(D * z) - c

    def g(z: np.ndarray) -> np.ndarray:
        return D * devfun.gradient(D * z)

    lower, upper = devfun.lower / D, (devfun.upper / D if glmm else None)
    moved = False
    for _ in range(POLISH_ROUNDS):
        if glmm and analytic:
            grad, hess = derivatives_from_gradient(g, z)
        else:
            grad, hess = derivatives(f, z, fz)
        fixed = _at_limit(devfun, D * z)
        z, fz, grad, step = newton_polish(f, z, fz, grad, hess, lower, upper,
                                          g if analytic else None, fixed)
        moved |= step
        worst = convergence_checks(z[:k], lower[:k], grad, hess, fixed)["gradient"]
        fails = worst is not None and worst > GRAD_TOL
        if not (step and fails):
            break
    return z, fz, grad, hess, moved, fails


def _curvature_steps(f, x: np.ndarray, default: np.ndarray, lower: np.ndarray,
                     h: float = 1e-2) -> tuple[np.ndarray, int]:
    """BOBYQA's first steps for the first ``default.size`` coordinates of ``x``: one
    standard deviation ``sqrt(2 / f'')`` from a second difference (one-sided next to
    a lower bound), at most ``default`` and at least 1e-3; ``default`` where ``f''`` is
    not positive. Returns the steps and the number of evaluations of ``f``."""
    f0 = f(x)
    step = default.copy()
    for i in range(default.size):
        e = np.zeros(x.size)
        e[i] = h
        if x[i] - h >= lower[i]:
            d2 = (f(x + e) - 2.0 * f0 + f(x - e)) / h**2
        else:
            f1 = f(x + e)
            d2 = (f(x + 2 * e) - 2.0 * f1 + f0) / h**2
        if np.isfinite(d2) and d2 > 0:
            step[i] = min(max(np.sqrt(2.0 / d2), 1e-3), default[i])
    return step, 1 + 2 * default.size


def optimize_glmm_fast(devfun: GLMMDevfun,
                       control: Mapping[str, Any] | None = None) -> tuple[OptSummary]:
    """lme4's ``nAGQ = 0`` (MixedModels.jl's ``fast = true``): only the covariance
    parameters are optimised, on the Laplace deviance with ``beta`` updated jointly
    with ``u`` in PIRLS (``GLMMDevfun.stage1``), to the tolerances of a full fit.
    The summary's ``final`` is ``concat(cov, beta)`` with PIRLS's beta.
    """
    ctl = _control(control)
    k = devfun.ncov
    f = _keep_best(devfun, devfun.stage1)
    s = bobyqa(f, devfun.cov_start(), devfun.lower[:k], upper=devfun.upper[:k],
               ftol_rel=ctl["ftol_rel"], ftol_abs=ctl["ftol_abs"], xtol_abs=ctl["xtol_abs"],
               maxfeval=ctl["maxfeval"])
    _require_pirls(devfun)
    s.final = np.concatenate([s.final, devfun.last.beta])
    return (s,)


def _require_pirls(devfun: GLMMDevfun) -> None:
    """A search after which PIRLS has never succeeded has nothing to go on."""
    if devfun.last is None:
        raise NumericalError(pirls_failure_message(
            devfun.design, devfun.response.family, devfun.ix.m))


def _keep_best(devfun: GLMMDevfun, f):
    """``f`` that leaves ``devfun`` at the PIRLS result of its lowest value so far.

    PIRLS warm-starts from the last evaluation; where the conditional mode is not
    unique (e.g. inverse links), re-evaluating the optimum after a search could
    land on another mode. The search's best result is restored instead.
    """
    best: list = [np.inf, None]  # value, PIRLS result

    def wrapped(x: np.ndarray) -> float:
        value = f(x)
        if value < best[0]:
            best[:] = [value, devfun.last]
        elif best[1] is not None:
            devfun.restore(best[1])
        return value

    return wrapped


def _search_verdict(devfun: LMMDevfun | GLMMDevfun, opt: OptSummary, x: np.ndarray,
                    converged: bool, messages: list[str]) -> tuple[bool, list[str], dict]:
    """What the derivative checks said, plus the search's own verdict: PIRLS at the
    optimum (GLMMs), a dispersion off to its boundary, the evaluation limit; and those
    three as data (``optinfo["checks"]``, read by ``glmmbench.inference.diagnostics``)."""
    glmm = isinstance(devfun, GLMMDevfun)
    flags = {"pirls_converged": True, "dispersion_boundary": None,
             "maxeval_reached": opt.returnvalue == "MAXEVAL_REACHED"}
    if glmm and (devfun.last is None or not devfun.last.converged):
        converged = False
        flags["pirls_converged"] = False
        messages.append("PIRLS did not converge at the optimum (separation, or a mode on "
                        "the boundary of the link's domain?)")
    if glmm and getattr(devfun.response, "dispersion_name", None) is not None:
        boundary = _dispersion_messages(devfun, x)
        flags["dispersion_boundary"] = boundary[0] if boundary else ""
        messages += boundary
    where = _psi_range(devfun)
    if where is not None:
        why = devfun.response.psi_limit(x[where])
        flags["family_param_boundary"] = "" if why is None else why
        if why is not None:
            values = ", ".join(f"{k} = {v:.4g}" for k, v in
                               devfun.response.psi_values(x[where]).items())
            messages.append(f"family parameter on its limit ({values}): {why}")
    if flags["maxeval_reached"]:
        converged = False
        messages.append(f"optimizer reached the maximum of {opt.feval} evaluations")
    return converged, messages, flags


def _fast_result(design, fam, devfun: GLMMDevfun, stages, ctl, nagq, t0) -> GLMMResult:
    """The result of a ``nagq = 0`` fit: convergence judged on the derivatives of the
    objective that was optimised (over the covariance parameters), vcov from R_X."""
    k = devfun.ncov
    cov = stages[-1].final[:k]
    f = devfun.stage1
    fx = f(cov)
    converged, conv_msgs = stages[-1].returnvalue not in ("MAXEVAL_REACHED", "UNKNOWN"), []
    checks = {}
    if ctl["calc_derivs"]:
        D = devfun.param_scale[:k]  # in the parameters' units, as optimum_derivatives
        grad, hess = derivatives(lambda z: f(D * z), cov / D, fx)
        f(cov)  # leave the devfun's state at the optimum
        checks = convergence_checks(cov / D, devfun.lower[:k] / D, grad, hess)
        converged, conv_msgs = convergence_verdict(checks, grad.size)
    converged, conv_msgs, flags = _search_verdict(devfun, stages[-1], stages[-1].final,
                                                  converged, conv_msgs)
    return make_result(design, fam, devfun, stages, grad=None, hess=None, converged=converged,
                       messages=list(design.messages) + conv_msgs, reml=False, nagq=nagq,
                       time_s=time.perf_counter() - t0, checks={**checks, **flags})


def _dispersion_messages(devfun: GLMMDevfun, x: np.ndarray) -> list[str]:
    """Say so when the dispersion runs off: to its bound, or where the family says
    its value is a limit (``dispersion_boundary``: the negative binomials' Poisson
    limit, where the likelihood is flat in it)."""
    i = devfun.ntheta
    resp = devfun.response
    if resp.disp_X is not None:  # one dispersion per observation: no single boundary
        return []
    value = float(np.exp(x[i]))
    mu_max = float(np.max(devfun.last.working.mu)) if devfun.last is not None else np.nan
    why = resp.family.dispersion_boundary(value, mu_max)
    if why is None and (x[i] >= devfun.upper[i] - 1e-3 or x[i] <= devfun.lower[i] + 1e-3):
        why = "the estimate runs off to the boundary of the parameter space"
    if why is None:
        return []
    name = resp.dispersion_name
    return [f"dispersion {name} on the boundary ({name} = {value:.4g}): {why}"]


def fit(formula: str, data: pd.DataFrame, family: str = "gaussian", link: str | None = None,
        *, weights: Any = None, offset: Any = None, nagq: int = 1, reml: bool | None = None,
        threshold: str | None = None, dispformula: str | None = None,
        control: Mapping[str, Any] | None = None) -> GLMMResult:
    """Fit a generalized linear mixed model given in lme4's formula syntax.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 + x | g)"``; see ``glmmbench.model.formula``.
    data : DataFrame
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"``, ``"negative_binomial"`` (alias
        ``"nbinom2"``), ``"nbinom1"``, ``"Gamma"`` (alias ``"gamma"``), as R names them.
    link : str, optional
        R's link name; default canonical.
    weights, offset : array or column name, optional
    nagq : int
        1 = Laplace approximation; k > 1 = adaptive Gauss-Hermite quadrature with k
        nodes per random effect (k^q per group: a product rule for q-vector
        effects), for models with a single grouping factor; 0 = lme4's fast
        ``nAGQ = 0``: the Laplace deviance optimised over the covariance parameters
        only, beta from PIRLS (its standard errors from ``R_X``, as lme4's). A linear
        mixed model's likelihood is exact: any nagq but 1 is an error there.
    threshold : str, optional
        Ordinal models' thresholds (``"flexible"``, the default, ``"equidistant"``,
        ``"symmetric"``, as clmm); an error for any other family.
    reml : bool, optional
        Linear mixed models only (default True); ``reml=True`` on a GLMM is an error.
    dispformula : str, optional
        glmmTMB's one-sided formula of the dispersion, ``"~ x + f"``: glmmTMB's
        ``betad = Xd gamma`` per observation (the log variance for gaussian, the log
        shape for Gamma, the log of ``sigma()`` for the other families with a
        dispersion), fitted by maximum likelihood (Laplace) with the rest;
        ``res.fixef_disp`` are its coefficients, as glmmTMB's ``fixef(m)$disp``.
    control : dict, optional
        Overrides of ``DEFAULT_CONTROL``.
    """
    t0 = time.perf_counter()
    # The engine's dense blocks are small: threaded BLAS only adds contention.
    if threshold is not None and threshold not in THRESHOLDS:
        raise GLMMError(f"threshold must be one of {', '.join(THRESHOLDS)}, not {threshold!r}")
    with _blas().limit(limits=1, user_api="blas"):
        return _fit(formula, data, family, link, weights=weights, offset=offset,
                    nagq=nagq, reml=reml, threshold=threshold, dispformula=dispformula,
                    control=control, t0=t0)


_BLAS: list[ThreadpoolController] = []


def _blas() -> ThreadpoolController:
    """One controller of the BLAS thread pools, made on first use (making one scans
    the loaded libraries: milliseconds, a fixed cost per fit otherwise)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0]


def _fit(formula, data, family, link, *, weights, offset, nagq, reml, threshold, dispformula,
         control, t0):
    if reml is not None and not isinstance(reml, bool | np.bool_):
        raise GLMMError(f"reml must be True, False or None, not {reml!r}")
    fam = make_family(family, link, threshold=threshold)
    ctl = _control(control)
    if dispformula is not None:
        if reml:
            raise GLMMError("reml=True with a dispformula: a dispersion model is fitted by "
                            "maximum likelihood (glmmTMB's default, REML = FALSE)")
        if not (isinstance(nagq, int | np.integer) and nagq == 1):
            raise GLMMError(f"nagq={nagq!r} with a dispformula: a dispersion model is fitted "
                            "by the Laplace approximation (nagq=1), as glmmTMB fits it")
    design = build_design(formula, data, fam, weights=weights, offset=offset,
                          dispformula=dispformula)
    check_response_varies(design)
    design = fam.prepare_design(design)
    return fit_design(design, fam, nagq=nagq, reml=reml, ctl=ctl, t0=t0)


def fit_design(design: Design, fam, *, nagq: int, reml: bool | None, ctl: Mapping[str, Any],
               t0: float) -> GLMMResult:
    """Every stage after the design: the response, the deviance, its optimisation and
    the result (``fit``, ``refit`` and ``refit_ml`` share it). A numerical breakdown
    on the way is a `NumericalError`."""
    try:
        return _fit_design(design, fam, nagq=nagq, reml=reml, ctl=ctl, t0=t0)
    except (np.linalg.LinAlgError, FloatingPointError, OverflowError) as exc:
        raise NumericalError(
            f"the fit of {design.formula!r} broke down numerically ({type(exc).__name__}: "
            f"{exc}): look for covariates on extreme scales (rescale them), and for "
            "constant or collinear columns") from exc


def _fit_design(design: Design, fam, *, nagq: int, reml: bool | None,
                ctl: Mapping[str, Any], t0: float) -> GLMMResult:
    response = make_response(design, fam)
    is_lmm = response is None
    if is_lmm and not (isinstance(nagq, int | np.integer) and nagq == 1):
        raise GLMMError(f"nagq={nagq!r} applies to generalized models: a linear mixed "
                        "model's likelihood is exact (leave nagq at 1)")
    if not is_lmm and reml:
        raise GLMMError(f"reml=True applies to linear mixed models (family='gaussian', "
                        f"link='identity'); a {fam.name}({fam.link.name}) model is fitted "
                        "by maximum likelihood (Laplace or nagq > 1)")
    use_reml = bool(reml if reml is not None else True) if is_lmm else False
    fast = isinstance(nagq, int | np.integer) and not isinstance(nagq, bool) and nagq == 0
    if fast and not fam.fast_fit:
        raise GLMMError("nagq = 0 (beta from PIRLS) is for the GLM and multinomial families; "
                        "an ordinal model's thresholds are not in PIRLS: use nagq=1 (Laplace) "
                        "or nagq > 1")
    separation = None if is_lmm else _separation(design, fam)
    devfun = make_devfun(design, response, nagq=1 if fast and not is_lmm else nagq,
                         reml=use_reml)
    if not is_lmm:
        devfun.tol = PIRLS_TOL_OPT
    if is_lmm:
        stages = (optimize_lmm(devfun, ctl),)
    elif fast:
        stages = optimize_glmm_fast(devfun, ctl)
    else:
        stages = optimize_glmm(devfun, ctl)
    if not is_lmm:
        devfun.tol = PIRLS_TOL_DERIVS
    if fast:
        res = _fast_result(design, fam, devfun, stages, ctl, nagq, t0)
    else:
        res = finish_fit(design, fam, devfun, stages, ctl, reml=use_reml, nagq=nagq, t0=t0)
    if separation is not None:
        res.optinfo["checks"]["separation"] = separation
        if separation["coefficients"]:  # infinite estimates: not a converged fit
            res.converged = False
            res.messages.insert(0, separation["message"])
    return res


def _separation(design: Design, fam) -> dict | None:
    """``glmmbench.engine.separation``'s verdict on the fixed effects as data (None where the
    check does not apply): the coefficients with infinite estimates and the message."""
    if fam.separation_cone is None:
        return None
    levels = design.response_levels
    sep = detect_separation(design.X, design.y, design.weights, design.fixef_names,
                            fam, ncat=len(levels) if levels else None)
    return {"coefficients": list(sep.coefficients), "complete": sep.complete,
            "message": sep.message if sep.separated else ""}


def finish_fit(design: Design, fam, devfun: LMMDevfun | GLMMDevfun,
               stages: tuple[OptSummary, ...], ctl: Mapping[str, Any], *, reml: bool,
               nagq: int, t0: float) -> GLMMResult:
    """The last stage: derivatives and the Newton polish at the optimum, the
    convergence verdict, the result."""
    opt = stages[-1]
    x = opt.final
    fx = devfun(x)
    if not np.isfinite(fx):
        raise NumericalError(nonfinite_deviance_message(design, fam, nagq))
    x, fx = _pin_limits(devfun, x, fx)
    opt.final, opt.fmin = x, fx
    grad = hess = None
    if ctl["calc_derivs"]:
        x, fx, grad, hess, moved = optimum_derivatives(devfun, x, fx)
        if moved:
            opt.final, opt.fmin = x, fx
        devfun(x)  # leave the devfun's state at the optimum
        checks = scaled_checks(devfun, x, grad, hess)
        converged, conv_msgs = convergence_verdict(checks, grad.size)
    else:
        converged, conv_msgs = opt.returnvalue not in ("MAXEVAL_REACHED", "UNKNOWN"), []
        checks = {}
    converged, conv_msgs, flags = _search_verdict(devfun, opt, x, converged, conv_msgs)
    return make_result(
        design, fam, devfun, stages, grad=grad, hess=hess, converged=converged,
        messages=list(design.messages) + conv_msgs, reml=reml, nagq=nagq,
        time_s=time.perf_counter() - t0, checks={**checks, **flags},
    )


def refit_ml(result: GLMMResult, control: Mapping[str, Any] | None = None) -> GLMMResult:
    """A REML fit of a linear mixed model refitted by maximum likelihood on its own
    design (lme4's ``refitML``); any other result is returned as it is."""
    if not (result.is_lmm and result.reml):
        return result
    t0 = time.perf_counter()
    with _blas().limit(limits=1, user_api="blas"):
        return fit_design(result.design, result.family, nagq=1, reml=False,
                          ctl=_control(control), t0=t0)


def refit(result: GLMMResult, newresp: Any, control: Mapping[str, Any] | None = None
          ) -> GLMMResult:
    """The same model fitted to a new response (lme4's ``refit``): the fit's own design,
    family, ``nagq`` and ``reml`` with ``y`` replaced.

    ``newresp`` has one value per observation, on the scale ``simulate()`` draws:
    binomial proportions of the prior weights, counts, categories (ordinal and
    multinomial: a Categorical with the fit's levels, or their 0-based codes).
    A response the family cannot take (text for a numeric family, a binomial value
    outside 0-1, negative or fractional counts, a non-positive Gamma value, a code
    that is not a category) is a `DataError` saying so.
    """
    from glmmbench.errors import DataError

    d = result.design
    fam = result.family
    levels = d.response_levels
    values = newresp.array if isinstance(newresp, pd.Series) else newresp
    if isinstance(values, pd.Categorical):
        if levels is None:
            raise DataError(f"refit: newresp is categorical, but the {fam.name} family's "
                            "response is numeric (on the scale simulate() draws)")
        if list(values.categories) != list(levels):
            raise DataError("refit: a categorical response needs the fit's levels "
                            f"{list(levels)}, not {list(values.categories)}")
        values = values.codes.astype(float)
        values[values < 0] = np.nan
    try:
        y = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        what = ("a Categorical with the fit's levels or their 0-based codes" if levels
                else "numbers (on the scale simulate() draws)")
        raise DataError(f"refit: newresp must be {what}; it has values that are not "
                        f"numbers ({type(newresp).__name__})") from None
    n = fam.nobs(d)
    if y.shape != (n,):
        raise GLMMError(f"refit: newresp has {y.size} values, the fit {n} observations")
    if not np.all(np.isfinite(y)):
        raise GLMMError("refit: newresp has missing or infinite values")
    # the family's range, as build_design checks the fitted response
    bad, where, need = fam.outside_support(y, levels)
    if bad.any():
        raise DataError(f"refit: {fam.name} newresp has {int(bad.sum())} value(s) outside "
                        f"{where} (first: {y[bad][0]:g}, from {y[bad].min():g} to "
                        f"{y[bad].max():g}); it needs {need}")
    y = fam.newresp(y, levels)
    t0 = time.perf_counter()
    with _blas().limit(limits=1, user_api="blas"):
        return fit_design(replace(d, y=y), fam, nagq=result.nagq, reml=result.reml,
                          ctl=_control(control), t0=t0)


# ------------------------------------------------------------------ messages

LOG_FLOOR_MARGIN = 1e3  # responses this close to the log link's floor (EPS) are named


def pirls_failure_message(design: Design, family: ResponseFamily, n_random: int) -> str:
    """What to say when penalized IRLS failed at every covariance parameter tried.

    A response so small that the log link's floor holds its means (R's
    ``make.link("log")$linkinv`` is ``pmax(exp(eta), .Machine$double.eps)``, kept here
    for lme4's values; glmmTMB has no floor) is named with the factor that rescales it;
    separation is suggested only for the families that can have it."""
    failed = "penalized IRLS failed at every covariance parameter tried"
    head = (f"{failed}: the data ({design.n} observations, {n_random} random effects, "
            f"{design.p} fixed effects) cannot support this model")
    y = np.asarray(design.y, dtype=float)
    positive = y[y > 0]
    if family.link.name == "log" and family.units and positive.size \
            and np.median(positive) < LOG_FLOOR_MARGIN * EPS:
        k = -int(np.floor(np.log10(np.median(positive))))
        return (f"{failed}: the response {design.response_name!r} is on a scale of "
                f"{np.median(positive):.3g} (its median), below or near {EPS:.3g}, the "
                "smallest mean the log link gives (as R's make.link('log'), which lme4 "
                "uses, exp(eta) is floored there), so the means cannot follow it; rescale "
                f"it, e.g. {design.response_name} * 1e{k}: with the log link that is the "
                f"same model, only the intercept moves (by log(1e{k}) = {k * np.log(10):.4g})")
    if family.separable:
        return f"{head}; simplify it, or look for separation"
    return f"{head}; simplify it, or look for covariates or a response on extreme scales"


def nonfinite_deviance_message(design: Design, family: ResponseFamily, nagq: int) -> str:
    """What to say when the deviance is not finite at the end of the search.

    A constant response first (lme4's design stage accepts a constant Gaussian
    response, and lmer "fits" it with a residual sd of 0 and a REML criterion of -Inf;
    glmer refuses it); for a linear mixed model, a residual sum of squares of 0; else
    the mean left the family's support, and the canonical link or nagq = 1 are advised
    only where the model has another."""
    y = np.asarray(design.y, dtype=float)
    if y.size and np.all(y == y[0]):
        return (f"response {design.response_name!r} is constant (all values {y[0]:g}): "
                "there is no variation to model")
    link = family.link.name
    if family.lmm:
        return ("the (RE)ML deviance is not finite at the end of the search: the model "
                f"reproduces the response {design.response_name!r} exactly (a residual sum "
                "of squares of 0), or its scale is extreme; look for a response that is a "
                "copy or a function of the covariates or the grouping factors")
    tips = []
    canonical = getattr(family, "canonical", None)
    if canonical is not None and link != canonical:
        tips.append(f"the canonical link ({canonical})")
    if nagq != 1:
        tips.append("nagq=1")
    tips.append("a simpler model")
    return ("the deviance is not finite at the end of the search (every point the "
            "optimizer tried left the mean outside the family's support, or PIRLS failed): "
            f"the model does not fit these data; try {', or '.join(tips)}")
