"""GLMMResult: estimates, vcov, fit statistics, OptSummary; rendering kept apart.

Conventions follow R's reference engine for the model (lme4):

- ``loglik``: LMM, the (RE)ML log-likelihood; GLMM, ``-1/2`` the Laplace (``nagq = 1``)
  or AGQ deviance, with every constant of the conditional density (for AGQ, unlike lme4).
- ``deviance``: LMM, ``-2 loglik`` (R's ``REMLcrit`` for REML fits); GLMM, the
  sum of squared deviance residuals at the conditional modes (R's ``deviance()``).
- ``df``: number of parameters (beta, theta, and sigma for an LMM);
  ``aic = -2 loglik + 2 df``, ``bic = -2 loglik + log(nobs) df``.
- ``vcov``: LMM, ``sigma^2 (R_X' R_X)^{-1}``; GLMM, from the finite-difference
  Hessian of the deviance over ``(theta, beta)`` as lme4's ``use.hessian = TRUE``,
  falling back to ``(R_X' R_X)^{-1}`` with a message when it is not positive definite.

Imports: the result's methods delegate to `glmmbench.inference` (confint, coef_table,
bootstrap, ...) and to `glmmbench.fit` (``refit``, ``refit_ml``) with imports inside
the methods, so that inference takes a result and refits through it without importing
the fit. That leaves one import loop of two files, results <-> fit: `glmmbench.fit`
assembles a result (``make_result``) and a result refits itself through the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla

from glmmbench.engine.deviance import GLMMDevfun, LMMDevfun, z_lambda
from glmmbench.engine.linalg import ReIndex, crossproducts, factorize
from glmmbench.engine.optimize import OptSummary
from glmmbench.engine.quadrature import gh_rule
from glmmbench.errors import GLMMError
from glmmbench.families.glm import Family
from glmmbench.families.multinomial import softmax_probs
from glmmbench.families.ordinal import OrdinalFamily
from glmmbench.families.response import GLMResponse
from glmmbench.inference.gamm import (
    default_grid,
    fitted_smooths,
    partial_effect,
    plot_smooths,
    smooth_table,
    smooth_tests,
)
from glmmbench.inference.marginal import marginal_mean, re_variance
from glmmbench.model.design import Design, NewLevelsWarning
from glmmbench.model.theta import lambdas

__all__ = ["GLMMResult", "make_result", "NewLevelsWarning"]

_MGCV_CLASS = {"tp": "tprs.smooth", "cr": "cr.smooth", "ps": "pspline.smooth"}
_MARGINAL_NODES = 40  # Gauss-Hermite nodes of ordinal population-averaged predictions


def _version() -> str:
    """The installed distribution's version (the package's ``__version__``)."""
    try:
        return metadata.version("glmmbench")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


@dataclass
class GLMMResult:
    """A fitted GLMM (see ``glmmbench.fit``)."""

    formula: str
    family: Family | OrdinalFamily
    design: Design = field(repr=False)
    fixef: pd.Series
    se: pd.Series
    vcov: pd.DataFrame
    varcorr: pd.DataFrame
    theta: np.ndarray
    sigma: float
    loglik: float
    deviance: float
    aic: float
    bic: float
    nobs: int
    df: int
    ngroups: dict[str, int]
    converged: bool
    messages: list[str]
    optinfo: dict[str, Any]
    reml: bool
    nagq: int
    time_s: float
    b: np.ndarray = field(repr=False)
    thresholds: pd.Series | None = None
    threshold_se: pd.Series | None = None
    smooths: pd.DataFrame | None = None
    beta: np.ndarray | None = field(default=None, repr=False)  # every column of X
    fitted_smooths: list = field(default_factory=list, repr=False)
    edf_total: float | None = None
    # what ``ranef`` needs besides theta and b: (the blocked factor, its ReIndex, scale^2)
    ranef_inputs: tuple | None = field(default=None, repr=False)
    # glmmTMB's dispersion model, fixef(m)$disp (betad: the log variance for gaussian, the
    # log shape for Gamma, log sigma() otherwise) and its standard errors; None for a
    # family without a dispersion and for an LMM
    fixef_disp: pd.Series | None = None
    se_disp: pd.Series | None = None

    @property
    def family_params(self) -> dict[str, float]:
        """glmmTMB's ``family_params()``: a t's df, Tweedie's power ({} for families
        without parameters of their own)."""
        return dict(getattr(self.family, "family_params", {}))

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """The conditional modes per grouping factor with their conditional standard
        deviations (lme4's ``ranef(condVar = TRUE)``), computed on first use as lme4
        does: the diagonal blocks of ``A^{-1}`` cost more than some fits (InstEval:
        0.2 s of 2)."""
        fac, ix, scale2 = self.ranef_inputs
        return _ranef(self.design, self.theta, self.b, fac.inverse_diag_blocks(ix), scale2)

    def coef_table(self, ddf: str | None = None) -> pd.DataFrame:
        """The coefficient table with R's column names (``glmmbench.inference.tables.coef_table``):
        t values (LMMs; with ``ddf="Satterthwaite"`` or ``"Kenward-Roger"`` lmerTest's df
        and p-values) or Wald z tests (GLMMs)."""
        from glmmbench.inference.tables import coef_table

        return coef_table(self, ddf)

    def confint(self, method: str = "profile", level: float = 0.95, parm=None,
                nsim: int = 500, seed: int | None = None, workers=None) -> pd.DataFrame:
        """Confidence intervals with lme4's row names (``.sig01``, ..., ``.sigma``, the
        fixed effects): ``"profile"``, ``"Wald"`` or ``"boot"``
        (``glmmbench.inference.tables.confint``)."""
        from glmmbench.inference.tables import confint

        return confint(self, method, level, parm, nsim=nsim, seed=seed, workers=workers)

    def diagnostics(self) -> pd.DataFrame:
        """The fit's checks, one row each with a verdict and a message
        (``glmmbench.inference.diagnostics``)."""
        from glmmbench.inference.diagnostics import diagnostics

        return diagnostics(self)

    @property
    def status(self) -> str:
        """``"separation"`` (infinite fixed-effect estimates), ``"not converged"``,
        ``"boundary"`` (a variance at 0 or a dispersion on its boundary), else ``"ok"``."""
        checks = self.optinfo.get("checks", {})
        if (checks.get("separation") or {}).get("coefficients"):
            return "separation"
        if not self.converged:
            return "not converged"
        if (checks.get("singular") or checks.get("dispersion_boundary")
                or checks.get("family_param_boundary")):
            return "boundary"
        return "ok"

    def refit(self, newresp, control=None) -> GLMMResult:
        """The same model fitted to a new response, from this fit's design (lme4's
        ``refit``; ``glmmbench.fit.refit``)."""
        from glmmbench.fit import refit

        return refit(self, newresp, control)

    def refit_ml(self, control=None) -> GLMMResult:
        """This model by maximum likelihood: itself unless it is a REML fit
        (``glmmbench.fit.refit_ml``)."""
        from glmmbench.fit import refit_ml

        return refit_ml(self, control)

    def bootstrap(self, nsim: int, seed: int | None = None, workers=None) -> pd.DataFrame:
        """A parametric bootstrap, one row per replicate (``glmmbench.inference.bootstrap``)."""
        from glmmbench.inference.bootstrap import bootstrap

        return bootstrap(self, nsim, seed=seed, workers=workers)

    def marginal_coefs(self, std_errors: bool = True) -> pd.DataFrame:
        """Population-averaged coefficients with delta-method standard errors, as
        GLMMadaptive's ``marginal_coefs`` (``glmmbench.inference.marginal.marginal_coefs``)."""
        from glmmbench.inference.marginal import marginal_coefs

        return marginal_coefs(self, std_errors)

    @property
    def method(self) -> str:
        if self.is_lmm:
            return "REML" if self.reml else "ML"
        if self.nagq == 0:
            return "Laplace(nAGQ=0)"  # lme4's fast fit: beta from PIRLS
        return "Laplace" if self.nagq == 1 else f"AGQ({self.nagq})"

    @property
    def is_lmm(self) -> bool:
        """A linear mixed model (fitted by PLS); a Gaussian model with a dispformula
        is a GLMM."""
        return self.family.lmm and self.design.disp_X is None

    def vcov_all(self) -> pd.DataFrame:
        """The Wald covariance of every parameter but the random effects' (glmmTMB's
        ``vcov(m, full = TRUE)``): the fixed effects, the dispersion model's
        coefficients (``disp~`` and its column names; glmmTMB's ``betad`` scale) and the
        family's own parameters (``psi~`` and glmmTMB's names; the internal scale: a t's
        log df, Tweedie's logit(power - 1), ordbeta's logit cut-offs), from the Hessian
        of the deviance at the optimum (``Var = 2 H^{-1}``). A linear mixed model, a
        family without those parts and an ordinal model give ``vcov``."""
        hess = self.optinfo.get("derivs", {}).get("Hessian")
        if self.is_lmm or hess is None or (self.fixef_disp is None and not self.family_params) \
                or self.thresholds is not None or self.design.smooths:
            return self.vcov
        H = np.asarray(hess, dtype=float)
        nt = self.theta.size
        ndisp = 0 if self.fixef_disp is None else self.fixef_disp.size
        npsi = len(self.family_params)
        names = ([f"disp~{k}" for k in (self.fixef_disp.index if ndisp else [])]
                 + [f"psi~{k}" for k in self.family_params] + list(self.fixef.index))
        try:
            V = 2.0 * np.linalg.inv(H)[nt:, nt:]
        except np.linalg.LinAlgError:
            V = np.full((len(names), len(names)), np.nan)
        if ndisp and self.design.disp_X is None:  # log d -> glmmTMB's betad = log d / power
            scale = np.ones(len(names))
            scale[0] = 1.0 / self.family.betad_power
            V = V * np.outer(scale, scale)
        order = [*range(ndisp + npsi, len(names)), *range(ndisp + npsi)]
        V = V[np.ix_(order, order)]
        names = [names[i] for i in order]
        return pd.DataFrame(0.5 * (V + V.T), index=names, columns=names)

    def disp_table(self) -> pd.DataFrame:
        """The dispersion model's coefficients (glmmTMB's ``fixef(m)$disp``) with Wald z
        tests, as ``coef_table``'s columns; empty for a family without a dispersion."""
        from scipy import stats

        if self.fixef_disp is None:
            return pd.DataFrame(columns=["Estimate", "Std. Error", "z value", "Pr(>|z|)"])
        z = self.fixef_disp / self.se_disp
        return pd.DataFrame({"Estimate": self.fixef_disp, "Std. Error": self.se_disp,
                             "z value": z, "Pr(>|z|)": 2.0 * stats.norm.sf(np.abs(z))})

    def dispersion(self, design: Design | None = None) -> float | np.ndarray:
        """The family's dispersion (glmmTMB's ``sigma()``) on the rows of ``design``
        (default: the fit's): one number, or one per row for a ``dispformula`` model."""
        d = self.design if design is None else design
        if d.disp_X is None:
            return self.sigma
        power = self.family.betad_power
        return np.exp(power * (d.disp_X @ self.fixef_disp.to_numpy()))

    @property
    def loglik_saturated(self) -> float | None:
        """``sum log f(y_i | mu_i = y_i)`` for binomial and Poisson responses (0 for
        binary ones), None otherwise. lme4's ``logLik()`` at ``nAGQ > 1`` is
        ``loglik - loglik_saturated`` (known_discrepancies ``lme4-agq-*-loglik``)."""
        if not self.family.saturated_loglik:
            return None
        d = self.design
        resp = GLMResponse(d.y, d.weights, d.offset, self.family, trials=d.trials)
        mu = resp.mustart()  # any valid mu: -2 log f(y | mu) - deviance(mu) is constant
        return float(-(resp.minus2loglik(mu) - resp.deviance(mu)) / 2)

    # ----------------------------------------------------------------- predict
    def _eta(self, design: Design, re: bool) -> np.ndarray:
        """The linear predictor; smooths (random terms in the fit) are always in it."""
        beta = self.fixef.to_numpy() if self.beta is None else self.beta
        eta = design.X @ beta + design.offset
        start = 0
        for t in design.terms:
            size = t.nlevels * t.q
            if re or t.smooth is not None:
                bt = self.b[start:start + size].reshape(t.nlevels, t.q)
                known = t.codes >= 0
                contrib = np.zeros(design.n)
                contrib[known] = np.einsum("ik,ik->i", t.Xr[known], bt[t.codes[known]])
                eta = eta + contrib
            start += size
        return eta

    def _re_var(self, design: Design) -> np.ndarray:
        """Variance of each observation's random part ``z_i' b`` (``re_variance``)."""
        return re_variance(design, self.theta, self.sigma**2 if self.is_lmm else 1.0)

    def predict(self, newdata: pd.DataFrame | None = None, type: str | None = None,
                re: bool | str = True, *, offset=None, allow_new_levels: bool = False
                ) -> np.ndarray | pd.DataFrame | pd.Series:
        """Predictions, conditional on the random effects' modes (``re=True``), at the
        population level (``re=False``: random effects 0) or averaged over the
        random-effect distribution (``re="marginal"``, population-averaged over each
        observation's ``z_i' b``: ``glmmbench.inference.marginal.marginal_mean``; ordinal models
        by 40-node Gauss-Hermite quadrature). ``re`` also takes numpy booleans and the
        integers 1 and 0.

        ``type``: ``"response"`` (default) or ``"link"``; ordinal models
        ``"prob"`` (default; an n x K DataFrame), ``"cumprob"`` (``P(Y <= j)``, n x
        (K - 1)) or ``"class"`` (the most probable category).

        ``newdata``: default the fitted rows, with the fit's own offset. Offsets of
        new data: the formula's ``offset()`` terms are evaluated on ``newdata`` (as
        lme4 does); ``offset`` (an array, one value per row of ``newdata``, or a
        column name) stands for the fit's ``offset=`` argument, and is required when
        that was an array (its values for new rows cannot be known: a `DataError`
        without it); a fit whose ``offset=`` named a column takes it from ``newdata``.

        ``allow_new_levels``: with ``re=True``, a grouping level of ``newdata`` the fit
        did not see (or a missing one) is a `DataError` naming the factor and the
        levels, as lme4's default; with ``allow_new_levels=True`` those rows get the
        population value for that factor, with a `NewLevelsWarning` naming the factor
        and the count of rows (lme4's ``allow.new.levels = TRUE``).
        """
        fam = self.family
        types = fam.predict_types
        type = types[0] if type is None else type
        if type not in types:
            raise ValueError(f"type must be one of {', '.join(map(repr, types))}, "
                             f"not {type!r}")
        re = _re_argument(re)
        if not _is_truth(allow_new_levels):
            raise GLMMError(f"allow_new_levels must be True or False, not {allow_new_levels!r}")
        if newdata is None:
            if offset is not None:
                raise GLMMError("offset= applies to newdata; without newdata the fitted rows "
                                "are predicted with the fit's own offset")
            design = self.design
        else:
            new_levels = ("error" if re is True and not allow_new_levels
                          else "warn" if re is True else "allow")
            design = self.design.new_data(newdata, offset=offset, new_levels=new_levels)
        if fam.multivariate:
            return self._predict_multinomial(design, newdata is not None, type, re)
        eta = self._eta(design, re is True)
        if type == "link":
            return eta
        if not fam.thresholds:
            if re == "marginal":
                return marginal_mean(self.family.link, eta, self._re_var(design))
            return self.family.link.linkinv(eta)
        if re == "marginal":
            rule = gh_rule(_MARGINAL_NODES)
            z, w = rule.z[:, 0], np.exp(rule.logw)
            eta = eta[:, None] + np.sqrt(self._re_var(design))[:, None] * z[None, :]
        cum = self.family.link.cdf(self.thresholds.to_numpy()[None, :, None]
                                   - (eta if eta.ndim == 2 else eta[:, None])[:, None, :])
        cum = cum @ w if re == "marginal" else cum[:, :, 0]
        if type == "cumprob":
            return pd.DataFrame(cum, columns=self.thresholds.index)
        levels = list(self.design.response_levels)
        prob = pd.DataFrame(np.diff(cum, axis=1, prepend=0.0, append=1.0), columns=levels)
        if type == "prob":
            return prob
        return pd.Series(pd.Categorical(prob.idxmax(axis=1), categories=levels, ordered=True),
                         name="class")

    def _predict_multinomial(self, design: Design, new: bool, type: str, re: bool | str):
        d = self.family.prepare_design(design) if new else design
        levels = list(self.design.response_levels)
        K1 = len(levels) - 1
        eta = self._eta(d, re is True).reshape(-1, K1)
        if type == "link":
            return pd.DataFrame(eta, columns=[f"{c}~eta" for c in levels[1:]])
        if re == "marginal":
            # product Gauss-Hermite over each observation's (K-1)-vector of random parts
            rule = gh_rule(_MARGINAL_NODES if K1 == 1 else 11 if K1 == 2 else 5, K1)
            S = np.zeros((eta.shape[0], K1, K1))
            for t, L in zip(d.terms, lambdas(self.theta, d.cov_blocks), strict=True):
                Z = t.Xr.reshape(-1, K1, t.q)
                S += np.einsum("ika,ab,ilb->ikl", Z, L @ L.T, Z)
            C = np.linalg.cholesky(S + 1e-12 * np.eye(K1)[None])
            E = eta[:, :, None] + np.einsum("ikl,ml->ikm", C, rule.z)
            prob = softmax_probs(E) @ np.exp(rule.logw)
        else:
            prob = softmax_probs(eta)
        prob = pd.DataFrame(prob, columns=levels)
        if type == "prob":
            return prob
        return pd.Series(pd.Categorical(prob.idxmax(axis=1), categories=levels), name="class")

    # ----------------------------------------------------------------- smooths
    def _fitted_smooth(self, term: str):
        for f in self.fitted_smooths:
            if f.label == term:
                return f
        labels = ", ".join(f.label for f in self.fitted_smooths) or "none"
        raise ValueError(f"no smooth {term!r} in this model; its smooths: {labels}")

    def smooth_values(self, term: str, grid: pd.DataFrame | np.ndarray | None = None,
                      level: float = 0.95) -> pd.DataFrame:
        """The partial effect of smooth ``term`` (mgcv's label, e.g. ``"s(x)"`` or
        ``"s(x):fa"``) with its standard error and a pointwise ``level`` band.

        ``grid``: a DataFrame with the smooth's covariates (an array for a 1-d
        smooth); default 100 points over the covariate's range. The effect is
        centred as mgcv centres it (``predict(type = "terms")``).
        """
        f = self._fitted_smooth(term)
        data = self.design.smooth_data
        if grid is None:
            grid = default_grid(f, data)
        elif not isinstance(grid, pd.DataFrame):
            grid = pd.DataFrame({f.part.smooth.variables[0]: np.asarray(grid, dtype=float)})
        return partial_effect(f, grid, data, level)

    def plot_smooths(self):
        """A matplotlib figure with one panel per smooth: partial effect, 95 % band, rug."""
        if not self.fitted_smooths:
            raise ValueError("this model has no smooth terms")
        return plot_smooths(self.fitted_smooths, self.design.smooth_data)

    def smooth_tests(self) -> pd.DataFrame:
        """Approximate significance of the smooths (``glmmbench.inference.gamm.TEST_METHOD``):
        F tests for Gaussian models (estimated scale), chi-squared otherwise."""
        resid_df = self.nobs - self.edf_total if self.family.residual else None
        return smooth_tests(self.fitted_smooths, resid_df)

    # ---------------------------------------------------------------- simulate
    def simulate(self, nsim: int = 1, seed: int | np.random.Generator | None = None
                 ) -> pd.DataFrame:
        """Responses drawn from the fitted model with new random effects.

        Columns ``sim_1 .. sim_nsim``, on the scale of the fitted response
        (binomial: proportion of successes out of the prior weights).

        ``nsim``: a positive integer. ``seed``: None, a non-negative integer or a
        ``numpy.random.Generator``. A drawn linear predictor whose mean lies outside
        the family's range (Gamma's inverse or identity link at ``eta <= 0``, say) is a
        `NumericalError` naming the link.
        """
        if (isinstance(nsim, bool) or not isinstance(nsim, int | np.integer)) or nsim < 1:
            raise GLMMError(f"nsim must be a positive integer, not {nsim!r}")
        if not (seed is None or isinstance(seed, np.random.Generator)
                or (isinstance(seed, int | np.integer) and not isinstance(seed, bool)
                    and seed >= 0)):
            raise GLMMError("seed must be an integer >= 0, a numpy.random.Generator or "
                            f"None, not {seed!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        d = self.design
        V = z_lambda(d, self.theta)
        ix = ReIndex.from_design(d)
        base = self._eta(d, re=False)  # with the fitted smooths: they are not redrawn
        smooth = np.concatenate([np.full(t.nlevels * t.q, t.smooth is not None)
                                 for t in d.terms])
        thresholds = None if self.thresholds is None else self.thresholds.to_numpy()
        out = {}
        for s in range(nsim):
            u = np.where(smooth, 0.0, rng.standard_normal(ix.m))
            scale = self.sigma if self.is_lmm else 1.0
            eta = base + scale * ix.Zu(V, u)
            out[f"sim_{s + 1}"] = self.family.simulate(rng, eta, d.weights, self.dispersion(),
                                                       d.response_levels, thresholds,
                                                       replicate=s + 1)
        return pd.DataFrame(out)

    # ----------------------------------------------------------------- render
    def summary(self) -> str:
        """Text in lme4's order: header, fit statistics, random effects, fixed effects."""
        from glmmbench.summary import render_summary

        return render_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def to_record(self) -> dict[str, Any]:
        """The FitRecord dict (DESIGN.md), JSON-serializable."""
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "engine": "glmmbench",
            "engine_version": _version(),
            "model": {"formula": self.formula, "family": self.family.name,
                      "link": self.family.link.name, "method": self.method,
                      "nagq": self.nagq, "reml": self.reml},
            "nobs": int(self.nobs),
            "ngroups": {k: int(v) for k, v in self.ngroups.items()},
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "se": {k: float(v) for k, v in
                   (self.se if self.threshold_se is None
                    else pd.concat([self.threshold_se, self.se])).items()},
            "thresholds": ({} if self.thresholds is None
                           else {k: float(v) for k, v in self.thresholds.items()}),
            "varcorr": vc.to_dict(orient="records"),
            "theta": [float(v) for v in self.theta],
            # glmmTMB's sigma() where the family has a dispersion (Gaussian's residual
            # sd, NB2's size, NB1's phi, Gamma's CV), None for the others and where a
            # dispformula makes it vary (R's NA)
            "sigma": (float(self.sigma) if (self.family.residual
                                            or self.family.dispersion_name)
                      and np.isfinite(self.sigma) else None),
            # a dispformula's coefficients (glmmTMB's fixef(m)$disp), as reference_r
            # records them: for dispformula models only
            "fixef_disp": ({} if self.design.disp_X is None
                           else {k: float(v) for k, v in self.fixef_disp.items()}),
            "se_disp": ({} if self.design.disp_X is None
                        else {k: float(v) for k, v in self.se_disp.items()}),
            "family_params": self.family_params,
            # Wald standard errors of glmmTMB's sigma() and of the family's parameters
            "sigma_se": _finite(self.optinfo.get("dispersion", {}).get("se")),
            "family_params_se": {k: _finite(v) for k, v in
                                 self.optinfo.get("family_params_se", {}).items()},
            "loglik": float(self.loglik),
            "loglik_saturated": self.loglik_saturated,
            "deviance": float(self.deviance),
            "aic": float(self.aic),
            "bic": float(self.bic),
            "df": int(self.df),
            "converged": bool(self.converged),
            "status": self.status,
            "messages": list(self.messages),
            "time_s": float(self.time_s),
            "smooths": self._smooth_records(),
        }

    def _smooth_records(self) -> list[dict[str, Any]]:
        """As reference_r's: term, edf, k, class, lambda, and for a 1-d smooth without
        ``by`` its partial effect on 50 points over the covariate's range (with its
        standard error, ``se``)."""
        out = []
        for f in self.fitted_smooths:
            sm = f.part.smooth
            entry = {"term": f.label, "edf": float(f.edf), "k": int(sm.k),
                     "class": _MGCV_CLASS[sm.bs], "lambda": [float(f.lam)], "var": None,
                     "grid": [], "fit": []}
            if len(sm.variables) == 1 and sm.by is None:
                x = self.design.smooth_data[sm.variables[0]].to_numpy(dtype=float)
                pe = self.smooth_values(f.label, np.linspace(x.min(), x.max(), 50))
                entry.update(var=sm.variables[0], grid=pe[sm.variables[0]].tolist(),
                             fit=pe["fit"].tolist(), se=pe["se"].tolist())
            out.append(entry)
        return out


def _finite(value) -> float | None:
    """A finite number as a float, else None (JSON has no NaN)."""
    return float(value) if value is not None and np.isfinite(value) else None


def _is_truth(value) -> bool:
    """True or False, as a Python or numpy boolean or the integer 1 or 0."""
    if isinstance(value, bool | np.bool_):
        return True
    return isinstance(value, int | np.integer) and value in (0, 1)


def _re_argument(re) -> bool | str:
    """``predict``'s ``re``: True, False (numpy booleans, 1 and 0 as well) or
    ``"marginal"``; anything else a `GLMMError`."""
    if isinstance(re, str):
        if re == "marginal":
            return re
    elif _is_truth(re):
        return bool(re)
    raise GLMMError(f"re must be True, False or 'marginal', not {re!r}")


# -------------------------------------------------------------------- building
def _varcorr(design: Design, theta: np.ndarray, sigma: float, lmm: bool,
             residual: bool) -> pd.DataFrame:
    """as.data.frame(VarCorr(m)); an LMM's theta is relative to sigma, a GLMM's is not."""
    rows = []
    scale2 = sigma**2 if lmm else 1.0
    for t, L in zip(design.terms, lambdas(theta, design.cov_blocks), strict=True):
        if t.smooth is not None:  # reported in ``smooths``
            continue
        S = scale2 * (L @ L.T)
        sd = np.sqrt(np.diag(S))
        for i, name in enumerate(t.cnames):
            rows.append((t.varcorr_name, name, None, S[i, i], sd[i]))
        for j in range(t.q):
            for i in range(j + 1, t.q):
                cor = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((t.varcorr_name, t.cnames[j], t.cnames[i], S[i, j], cor))
    if residual:
        rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def _random_effects(design: Design, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``b = Lambda u``, term by term."""
    bs, start = [], 0
    for t, L in zip(design.terms, lambdas(theta, design.cov_blocks), strict=True):
        size = t.nlevels * t.q
        bs.append((u[start:start + size].reshape(t.nlevels, t.q) @ L.T).reshape(-1))
        start += size
    return np.concatenate(bs)


def _ranef(design: Design, theta: np.ndarray, b: np.ndarray, inv_blocks: list[np.ndarray],
           scale2: float) -> dict[str, pd.DataFrame]:
    """Per grouping factor, the modes ``b = Lambda u`` and their conditional sds."""
    out: dict[str, pd.DataFrame] = {}
    start = 0
    for t, L, blk in zip(design.terms, lambdas(theta, design.cov_blocks), inv_blocks, strict=True):
        size = t.nlevels * t.q
        bt = b[start:start + size].reshape(t.nlevels, t.q)
        start += size
        if t.smooth is not None:  # reported in ``smooths``
            continue
        condvar = scale2 * np.einsum("ab,jbc,dc->jad", L, blk, L)
        frame = pd.DataFrame(bt, index=pd.Index(t.levels, name=t.group), columns=t.cnames)
        for k, name in enumerate(t.cnames):
            frame[f"condsd({name})"] = np.sqrt(np.maximum(condvar[:, k, k], 0))
        if t.group in out:
            out[t.group] = pd.concat([out[t.group], frame], axis=1)
        else:
            out[t.group] = frame
    return out


def _dispersion_info(devfun: GLMMDevfun, value: float, hess: np.ndarray | None) -> dict:
    """The dispersion estimate and its Wald standard error (delta method from the
    Hessian of the deviance over ``(theta, log d, beta)``: ``Var = 2 H^{-1}``)."""
    i = devfun.ntheta
    se_log = np.nan
    if hess is not None:
        try:
            v = 2.0 * np.linalg.inv(hess)[i, i]
            se_log = float(np.sqrt(v)) if v > 0 else np.nan
        except np.linalg.LinAlgError:
            pass
    return {"name": devfun.response.dispersion_name, "value": value, "se": value * se_log,
            "se_log": se_log}


def _family_param_se(devfun: GLMMDevfun, x: np.ndarray, hess: np.ndarray | None
                     ) -> dict[str, float]:
    """Wald standard errors of a family's own parameters on their natural scale (a t's
    df, Tweedie's power): the delta method from their internal scale, ``Var = 2 H^{-1}``,
    the derivative of the map by a central difference."""
    resp = devfun.response
    i = devfun.ntheta + resp.ndisp
    psi = x[i:i + resp.npsi]
    var = np.full(psi.size, np.nan)
    if hess is not None:
        try:
            var = 2.0 * np.diag(np.linalg.inv(hess))[i:i + resp.npsi]
        except np.linalg.LinAlgError:
            pass
    h = 1e-6
    out = {}
    for j, name in enumerate(resp.psi_values(psi)):
        up, down = psi.copy(), psi.copy()
        up[j] += h
        down[j] -= h
        slope = (resp.psi_values(up)[name] - resp.psi_values(down)[name]) / (2 * h)
        out[name] = float(abs(slope) * np.sqrt(var[j])) if var[j] > 0 else float("nan")
    return out


def _dispersion_model(devfun: GLMMDevfun, x: np.ndarray, hess: np.ndarray | None
                      ) -> tuple[pd.Series, pd.Series]:
    """glmmTMB's ``fixef(m)$disp`` and their standard errors (``Var = 2 H^{-1}`` over the
    response's parameters): a dispformula's coefficients as they are, else the one
    ``(Intercept)`` ``log(d) / betad_power`` from the log dispersion."""
    resp, i = devfun.response, devfun.ntheta
    k = i + resp.ndisp
    params = x[i:k]
    se = np.full(k - i, np.nan)
    if hess is not None:
        try:
            v = 2.0 * np.diag(np.linalg.inv(hess))[i:k]
            se = np.where(v > 0, np.sqrt(np.where(v > 0, v, 1.0)), np.nan)
        except np.linalg.LinAlgError:
            pass
    design = devfun.design
    if design.disp_X is not None:
        names = list(design.disp_names)
    else:
        names = ["(Intercept)"]
        params, se = params / resp.betad_power, se / abs(resp.betad_power)
    return (pd.Series(params, index=names, name="fixef_disp"),
            pd.Series(se, index=names, name="se_disp"))


def _joint_factor(devfun: GLMMDevfun, res, design: Design, theta: np.ndarray):
    """The factor of the penalized system with X at the mode, with the Laplace
    factor's weights (those carry 1 / sigma^2 for Gaussian responses)."""
    resp = devfun.fitted_response
    cp = crossproducts(devfun.ix, *resp.whitened(resp.at_curvature(res.working),
                                                 z_lambda(design, theta), design.X, None))
    return factorize(cp, devfun.ix.q1)


def make_result(design: Design, family: Family | OrdinalFamily, devfun: LMMDevfun | GLMMDevfun,
                stages: tuple[OptSummary, ...], *, grad: np.ndarray | None,
                hess: np.ndarray | None, converged: bool, messages: list[str], reml: bool,
                nagq: int, time_s: float, checks: dict | None = None) -> GLMMResult:
    """Assemble the result from a devfun left at its optimum; ``checks`` (the
    convergence checks as data, ``glmmbench.inference.diagnostics`` reads them) go to
    ``optinfo["checks"]``."""
    opt = stages[-1]
    # a multinomial design has K - 1 rows per observation
    n = getattr(getattr(devfun, "response", None), "nobs", design.n)
    p = design.p
    names = list(design.fixef_names)
    lmm = isinstance(devfun, LMMDevfun)
    if lmm:
        theta = opt.final.copy()
        sol = devfun.last
        beta, u, fac = sol.beta, sol.u, sol.fac
        sigma = float(np.sqrt(sol.pwrss / (n - p if reml else n)))
        objective = opt.fmin if np.isfinite(opt.fmin) else devfun(theta)
        loglik = -objective / 2
        deviance = objective
        df = p + theta.size + 1
        Linv = sla.solve_triangular(fac.LXX, np.eye(p), lower=True)
        vcov = sigma**2 * (Linv.T @ Linv)
        scale2 = sigma**2
    else:
        k = devfun.ncov
        theta, beta = opt.final[:devfun.ntheta].copy(), opt.final[k:].copy()
        res = devfun.last
        u = res.u
        loglik = -devfun.objective(res) / 2
        deviance = float(np.sum(devfun.fitted_response.dev_resids(res.working.mu)))
        sigma = devfun.sigma(opt.final[:k])
        family = devfun.fitted_response.family
        df = p + k
        scale2 = 1.0
        vcov = None
        ordinal = family.thresholds
        # the Hessian's block of (thresholds' alpha, beta) for ordinal models, beta else
        first = devfun.ntheta if ordinal else k
        if hess is not None:
            try:
                Hinv = np.linalg.inv(hess)
                V = 2.0 * Hinv[first:, first:]
                if np.all(np.isfinite(V)) and np.all(np.linalg.eigvalsh(V) > 0):
                    vcov = V
            except np.linalg.LinAlgError:
                pass
        fac = res.fac  # L_Z at the conditional mode
        if ordinal:
            resp = devfun.fitted_response
            J = sla.block_diag(resp.threshold_jacobian_q(), np.eye(p))  # q -> thresholds
            full = (J @ vcov @ J.T if vcov is not None
                    else np.full((J.shape[0], J.shape[0]), np.nan))
            if vcov is None:
                messages.append("variance-covariance matrix from the finite-difference "
                                "Hessian is not positive definite: no standard errors")
            m = resp.tJac.shape[0]
            thresholds = pd.Series(resp.thresholds, index=list(resp.threshold_names),
                                   name="thresholds")
            threshold_se = pd.Series(np.sqrt(np.diag(full)[:m]), index=thresholds.index,
                                     name="se")
            vcov_full = pd.DataFrame(full, index=[*thresholds.index, *names],
                                     columns=[*thresholds.index, *names])
            vcov = full[m:, m:]
        elif vcov is None:
            if hess is not None:
                messages.append("variance-covariance matrix from the finite-difference "
                                "Hessian is not positive definite; using R_X instead")
            try:
                LXX = _joint_factor(devfun, res, design, theta).LXX
                Linv = sla.solve_triangular(LXX, np.eye(p), lower=True)
                vcov = Linv.T @ Linv
            except np.linalg.LinAlgError:
                messages.append("the fixed effects' information at the mode is not positive "
                                "definite either: no standard errors")
                vcov = np.full((p, p), np.nan)
    vcov = 0.5 * (vcov + vcov.T)
    if not family.thresholds:
        thresholds = threshold_se = None
        vcov_full = pd.DataFrame(vcov, index=names, columns=names)
    b = _random_effects(design, theta, u)
    fitted, edf_total, smooth_df = [], None, None
    if design.smooths:
        full_fac = fac if lmm else _joint_factor(devfun, res, design, theta)
        phi = sigma**2 if family.residual else 1.0
        fitted, edf_total, Vbeta = fitted_smooths(design, full_fac, theta, beta, u, scale2, phi)
        smooth_df = smooth_table(fitted)
        if not family.thresholds:
            # mgcv's and gamm4's convention: the Bayesian covariance given the variance
            # parameters (an LMM's sigma^2 (R_X' R_X)^{-1} already is)
            vcov = 0.5 * (Vbeta + Vbeta.T)
            vcov_full = pd.DataFrame(vcov, index=names, columns=names)
        # the smooths' null-space columns belong to the smooths, not to fixef
        par = design.parametric
        keep = np.concatenate([np.arange(vcov_full.shape[0] - p), vcov_full.shape[0] - p + par])
        vcov_full = vcov_full.iloc[keep, keep]
        vcov = vcov[np.ix_(par, par)]
        beta_all, beta, names = beta, beta[par], [names[j] for j in par]
    else:
        beta_all = beta
    optinfo = {"stages": [s.to_dict() for s in stages], "nagq": nagq,
               "checks": dict(checks or {})}
    if not lmm and devfun.rule is not None:
        optinfo["agq_nodes_per_group"] = devfun.rule.nnodes
    if grad is not None:
        optinfo["derivs"] = {"gradient": grad.tolist(), "Hessian": hess.tolist()}
    fixef_disp = se_disp = None
    if not lmm and getattr(devfun.response, "dispersion_name", None) is not None:
        if design.disp_X is None:
            optinfo["dispersion"] = _dispersion_info(devfun, sigma, hess)
        fixef_disp, se_disp = _dispersion_model(devfun, opt.final, hess)
    if not lmm and getattr(devfun.response, "npsi", 0):
        optinfo["family_params_se"] = _family_param_se(devfun, opt.final, hess)
    fixef = pd.Series(beta, index=names, name="fixef")
    return GLMMResult(
        formula=design.formula, family=family, design=design, fixef=fixef,
        se=pd.Series(np.sqrt(np.diag(vcov)), index=names, name="se"),
        vcov=vcov_full, thresholds=thresholds, threshold_se=threshold_se,
        varcorr=_varcorr(design, theta, sigma, lmm,
                         residual=family.residual and bool(np.isfinite(sigma))),
        theta=theta, sigma=sigma,
        loglik=float(loglik), deviance=float(deviance), aic=float(-2 * loglik + 2 * df),
        bic=float(-2 * loglik + np.log(n) * df), nobs=n, df=df, ngroups=design.ngroups,
        converged=converged, messages=messages, optinfo=optinfo, reml=reml,
        nagq=nagq, time_s=time_s, b=b, smooths=smooth_df, beta=beta_all,
        fitted_smooths=fitted, edf_total=edf_total,
        ranef_inputs=(fac, devfun.ix, scale2), fixef_disp=fixef_disp, se_disp=se_disp,
    )
