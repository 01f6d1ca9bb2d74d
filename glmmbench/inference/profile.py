"""Likelihood profiles and profile confidence intervals (lme4's ``profile`` and
``confint(method = "profile")``).

The parameters are on lme4's profiling scale, named as ``confint(oldNames = TRUE)``:
the random-effect standard deviations and correlations in theta's order
(``.sig01``, ``.sig02``, ...: an sd where theta holds a diagonal element of
Lambda, a correlation where it holds an off-diagonal one), the residual standard
deviation ``.sigma`` of a linear mixed model, then the fixed effects.

The profile of parameter ``w`` is the signed square root of the deviance
difference, minimised over every other parameter with ``w`` held at ``x``:

    zeta_w(x) = sign(x - x_hat) sqrt( min_{others} D(x, others) - D(x_hat, ...) ),

with ``D = -2 log L`` the maximum-likelihood deviance (a REML fit is refitted by ML
first, as lme4 does) or the fit's Laplace / AGQ deviance of a GLMM. The interval at
``level`` is where ``zeta`` crosses ``-+ qnorm((1 + level) / 2)``, found here by
root-finding on the profile itself (lme4 interpolates a spline through the points of
its profile; the two agree to its spline's accuracy). A limit the profile does not
reach before the parameter's bound (an sd at 0, a correlation at -+1) is that bound,
lme4's convention.

For a linear mixed model the fixed effects are profiled as lme4 does, by moving
``X_j beta_j`` into the offset and optimising the profiled ML deviance over theta;
for the variance parameters the deviance at fixed sigma is
``log|L_Z|^2 + r2(theta) / sigma^2 + n log(2 pi sigma^2)`` with beta profiled out.
For a GLMM every parameter (and any dispersion or ordinal threshold, which are
profiled out but not reported) is in the one Laplace deviance ``D(theta, beta)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize as sopt
from scipy import stats

from glmmbench.engine.deviance import make_devfun
from glmmbench.engine.optimize import bobyqa
from glmmbench.errors import GLMMError
from glmmbench.families import make_response
from glmmbench.model.theta import CovBlock, _tril_colmajor, lambdas, theta_lower

if TYPE_CHECKING:
    from glmmbench.results import GLMMResult

__all__ = ["Profile", "confint_profile", "sdcor_names", "theta_to_sdcor", "sdcor_to_theta",
           "interval_columns"]

MAX_STEPS = 60       # points tried on one side before giving up on a limit
MAX_MULTIPLIER = 10  # the step may grow at most this much from one point to the next
INNER_FTOL_ABS = 1e-10


def interval_columns(level: float) -> list[str]:
    """R's column names of a confidence interval: ``2.5 %``, ``97.5 %``."""
    a = (1 - level) / 2
    return [f"{100 * p:.3g} %" for p in (a, 1 - a)]


def sdcor_names(design, sigma: bool) -> list[str]:
    """``.sig01, .sig02, ...`` for theta's positions, then ``.sigma`` if there is one."""
    k = sum(b.ntheta for b in design.cov_blocks)
    return [f".sig{i + 1:02d}" for i in range(k)] + ([".sigma"] if sigma else [])


def _is_sd(blocks: tuple[CovBlock, ...]) -> np.ndarray:
    """True where theta's position is an sd (a bounded diagonal of Lambda), False for a
    correlation."""
    return np.isfinite(theta_lower(blocks))


def theta_to_sdcor(theta: np.ndarray, blocks: tuple[CovBlock, ...], scale: float) -> np.ndarray:
    """Standard deviations and correlations of the random effects in theta's positions;
    ``scale`` is sigma for an LMM (theta is relative to it), 1 otherwise."""
    out = []
    for b, L in zip(blocks, lambdas(theta, blocks), strict=True):
        S = scale**2 * (L @ L.T)
        sd = np.sqrt(np.diag(S))
        if b.scaled_identity:
            out.append(sd[:1])
            continue
        r, c = _tril_colmajor(b.q)
        with np.errstate(invalid="ignore", divide="ignore"):
            C = S / np.outer(sd, sd)
        out.append(np.where(r == c, sd[r], np.nan_to_num(C[r, c])))
    return np.concatenate(out) if out else np.zeros(0)


def _psd_cholesky(C: np.ndarray) -> np.ndarray | None:
    """Lower-triangular L with ``L L' = C`` for a positive semi-definite C (a zero
    pivot gives a zero column, as at a correlation of -+1); None if C is not PSD."""
    q = C.shape[0]
    L = np.zeros_like(C)
    for j in range(q):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10:
            return None
        L[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, q):
            s = C[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 0:
                L[i, j] = s / L[j, j]
            elif abs(s) > 1e-10:
                return None
    return L


def sdcor_to_theta(v: np.ndarray, blocks: tuple[CovBlock, ...], scale: float
                   ) -> np.ndarray | None:
    """The inverse of `theta_to_sdcor`: ``Lambda = diag(sd) chol(C) / scale``, with
    theta's non-negative diagonal; None if a block's correlations are not a
    correlation matrix."""
    out, pos = [], 0
    for b in blocks:
        k = b.ntheta
        if b.scaled_identity:
            out.append([v[pos] / scale])
        else:
            r, c = _tril_colmajor(b.q)
            sd = np.zeros(b.q)
            C = np.eye(b.q)
            for i, j, x in zip(r, c, v[pos:pos + k], strict=True):
                if i == j:
                    sd[i] = x
                else:
                    C[i, j] = C[j, i] = x
            LC = _psd_cholesky(C)
            if LC is None:
                return None
            out.append((sd[:, None] * LC / scale)[r, c])
        pos += k
    return np.concatenate(out) if out else np.zeros(0)


class Profile:
    """The profiled deviance of a fitted model over each of its parameters.

    ``zeta(name, x)`` evaluates the profile at one value, ``limits(name, level)`` finds
    the interval. The inner minimisations are BOBYQA's (lme4's profile uses the
    fit's optimizer), warm-started from the previous point.
    """

    def __init__(self, res: GLMMResult):
        if res.design.smooths:
            raise GLMMError("profile intervals are not available for models with smooth "
                            "terms: their penalised parts are variance parameters without "
                            "lme4 names; use method='Wald'")
        if res.nagq == 0:
            raise GLMMError("profile intervals need the deviance over every parameter: "
                            "refit with nagq=1 (nagq=0 leaves beta to PIRLS)")
        res = res.refit_ml()
        self.res = res
        d = res.design
        self.blocks = d.cov_blocks
        self.lmm = res.is_lmm
        nt = sum(b.ntheta for b in self.blocks)
        self.nt = nt
        sd = _is_sd(self.blocks)
        self.names = sdcor_names(d, self.lmm) + list(d.fixef_names)
        self.base = -2.0 * res.loglik
        if self.lmm:
            self.devfun = make_devfun(d, None, reml=False)
            self.estimate = np.concatenate([theta_to_sdcor(res.theta, self.blocks, res.sigma),
                                            [res.sigma], res.beta])
            var_lower = np.concatenate([np.where(sd, 0.0, -1.0), [0.0]])
            var_upper = np.concatenate([np.where(sd, np.inf, 1.0), [np.inf]])
            self.lower = np.concatenate([var_lower, np.full(d.p, -np.inf)])
            self.upper = np.concatenate([var_upper, np.full(d.p, np.inf)])
            self._index = list(range(len(self.names)))
        else:
            self.devfun = make_devfun(d, make_response(d, res.family), nagq=res.nagq)
            final = np.asarray(res.optinfo["stages"][-1]["final"], dtype=float)
            self.nextra = self.devfun.ncov - nt  # dispersion / threshold parameters
            self.estimate = np.concatenate([theta_to_sdcor(res.theta, self.blocks, 1.0),
                                            final[nt:]])
            self.lower = np.concatenate([np.where(sd, 0.0, -1.0), self.devfun.lower[nt:]])
            self.upper = np.concatenate([np.where(sd, np.inf, 1.0), self.devfun.upper[nt:]])
            # the reported parameters skip the response's own (dispersion, thresholds)
            self._index = list(range(nt)) + [nt + self.nextra + j for j in range(d.p)]
        self.se = self._wald_se()

    # ---------------------------------------------------------------- deviances
    def _index_of(self, name: str) -> int:
        if name not in self.names:
            raise GLMMError(f"no parameter {name!r}; the parameters are "
                            f"{', '.join(self.names)}")
        return self._index[self.names.index(name)]

    def _lmm_var_deviance(self, v: np.ndarray) -> float:
        """ML deviance at (sd/cor, sigma) with beta profiled out."""
        sigma = v[-1]
        theta = sdcor_to_theta(v[:-1], self.blocks, sigma) if sigma > 0 else None
        if theta is None:
            return np.inf
        return self.devfun.at_sigma(theta, sigma)

    def _glmm_deviance(self, x: np.ndarray) -> float:
        theta = sdcor_to_theta(x[:self.nt], self.blocks, 1.0)
        if theta is None:
            return np.inf
        return float(self.devfun(np.concatenate([theta, x[self.nt:]])))

    def _minimise(self, f, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  step: np.ndarray) -> tuple[float, np.ndarray]:
        if x0.size == 0:
            return f(x0), x0
        opt = bobyqa(f, x0, lower, upper=upper, initial_step=step, ftol_rel=1e-14,
                     ftol_abs=INNER_FTOL_ABS, xtol_abs=1e-9)
        return opt.fmin, opt.final

    def deviance(self, i: int, x: float) -> float:
        """``min D`` over every parameter but ``i`` (in the internal order) held at x."""
        if self.lmm and i >= self.nt + 1:
            return self._lmm_fixef_deviance(i - self.nt - 1, x)
        if self.lmm:
            full, f0 = self.estimate[:self.nt + 1], self._lmm_var_deviance
        else:
            full, f0 = self.estimate, self._glmm_deviance
        free = np.arange(full.size) != i
        start = self._warm_start(x)[:full.size][free]

        def f(z: np.ndarray) -> float:
            v = np.empty(full.size)
            v[free], v[i] = z, x
            return f0(v)

        step = np.maximum(0.05 * np.abs(start), 0.01)
        step = np.minimum(step, np.where(np.isfinite(self.upper[:full.size][free]),
                                         0.25, np.inf))
        fmin, z = self._minimise(f, start, self.lower[:full.size][free],
                                 self.upper[:full.size][free], step)
        solution = self.estimate.copy()
        solution[:full.size][free], solution[i] = z, x
        self._path.append((x, solution))
        return fmin

    def _lmm_fixef_deviance(self, j: int, x: float) -> float:
        """lme4's fixed-effect profile: ``X_j x`` moved into the offset, the profiled
        ML deviance minimised over theta."""
        d = self.res.design
        keep = [k for k in range(d.p) if k != j]
        reduced = replace(d, X=np.ascontiguousarray(d.X[:, keep]),
                          fixef_names=tuple(d.fixef_names[k] for k in keep),
                          offset=d.offset + x * d.X[:, j])
        devfun = make_devfun(reduced, None, reml=False)
        start = self._warm_start(x)
        step = np.maximum(0.05 * np.abs(start), 0.01)
        fmin, theta = self._minimise(devfun, start, devfun.lower, np.full(start.size, np.inf),
                                     step)
        self._path.append((x, theta))
        return fmin

    def _reset_start(self, i: int) -> None:
        """Start a walk along parameter ``i`` from the estimate."""
        lmm_fixef = self.lmm and i >= self.nt + 1
        self._path = [(self.estimate[i], self.res.theta.copy() if lmm_fixef
                       else self.estimate.copy())]
        self._centre = self.estimate[i]

    def _warm_start(self, x: float) -> np.ndarray:
        """The inner solution of the point evaluated last on the way out to ``x``: the
        farthest from the estimate that is not beyond x (a solution from beyond, as at
        a bound where the problem degenerates, can trap the inner search)."""
        d = abs(x - self._centre)
        inside = [(abs(xi - self._centre), sol) for xi, sol in self._path
                  if abs(xi - self._centre) <= d and np.sign(xi - self._centre)
                  in (0, np.sign(x - self._centre))]
        return max(inside, key=lambda t: t[0])[1].copy()

    def _wald_se(self) -> np.ndarray:
        """A scale for the first step along each parameter: Wald SEs of the fixed
        effects, a fraction of the estimate (or 0.1) for the variance parameters."""
        se = np.maximum(0.1 * np.abs(self.estimate), 0.1)
        d = self.res.design
        first = self.nt + (1 if self.lmm else self.nextra)
        vcov = self.res.vcov.to_numpy()
        beta_se = np.sqrt(np.diag(vcov))[-d.p:] if vcov.shape[0] >= d.p else np.full(d.p, np.nan)
        se[first:first + d.p] = np.where(np.isfinite(beta_se) & (beta_se > 0), beta_se,
                                         se[first:first + d.p])
        return se

    # ------------------------------------------------------------------ zeta
    def zeta(self, name: str, x: float) -> float:
        """The signed root deviance difference at ``name = x``."""
        i = self._index_of(name)
        self._reset_start(i)
        return self._zeta(i, x)

    def _zeta(self, i: int, x: float) -> float:
        diff = self.deviance(i, x) - self.base
        if diff < -1e-6 * max(1.0, abs(self.base)):
            raise GLMMError(f"profiling {self.names_internal(i)} found a lower deviance "
                            f"({diff:.3g} below the fit's): the fit had not converged")
        return float(np.sign(x - self.estimate[i]) * np.sqrt(max(diff, 0.0)))

    def names_internal(self, i: int) -> str:
        return self.names[self._index.index(i)]

    def limits(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """The profile interval of one parameter."""
        i = self._index_of(name)
        z = stats.norm.ppf((1 + level) / 2)
        return self._limit(i, -z), self._limit(i, z)

    def _limit(self, i: int, target: float) -> float:
        """Where zeta crosses ``target``, walking out from the estimate in steps
        extrapolated from the last two points (lme4's ``nextpar``), then a root
        bracketed by the last two; the bound if the profile ends before it."""
        self._reset_start(i)
        s = np.sign(target)
        est = self.estimate[i]
        bound = self.lower[i] if s < 0 else self.upper[i]
        if est == bound:
            return float(bound)
        x_prev, z_prev = est, 0.0
        h = 0.25 * self.se[i]
        for _ in range(MAX_STEPS):
            x = est + s * h if x_prev == est else x_prev + s * h
            x = max(x, bound) if s < 0 else min(x, bound)
            zx = self._zeta(i, x)
            if abs(zx) >= abs(target):
                return float(sopt.brentq(lambda t: self._zeta(i, t) - target, *sorted((x_prev, x)),
                                         xtol=1e-8 * max(1.0, abs(x)), rtol=1e-10))
            if x == bound:
                return float(bound)
            slope = (zx - z_prev) / (x - x_prev)
            step = abs(x - x_prev)
            need = (target - zx) / slope if slope * s > 0 else np.inf
            h = min(max(1.1 * need, 0.1 * step), MAX_MULTIPLIER * step)
            x_prev, z_prev = x, zx
        raise GLMMError(f"the profile of {self.names_internal(i)} did not reach "
                        f"zeta = {target:.3g} in {MAX_STEPS} steps")


def confint_profile(res: GLMMResult, level: float = 0.95, parm=None) -> pd.DataFrame:
    """Profile confidence intervals with lme4's row names and R's column names."""
    prof = Profile(res)
    names = prof.names if parm is None else list(parm)
    rows = [prof.limits(name, level) for name in names]
    return pd.DataFrame(rows, index=names, columns=interval_columns(level))
