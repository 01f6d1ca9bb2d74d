"""A fitted model's checks as data: ``res.diagnostics()``.

One row per check, with a verdict (``pass``, ``fail`` or ``n/a`` where the check does
not apply to the model) and a plain-language message; in the spirit of glmmTMB's
``diagnose()`` and performance's ``check_convergence``. The checks:

- ``convergence``: the fit's own verdict (``res.converged``);
- ``singular``: a random-effect variance estimated at 0, or a correlation at -+1
  (lme4's ``isSingular``: a bounded element of theta below 1e-4);
- ``gradient``: lme4's scaled gradient at the optimum, against its 0.002;
- ``hessian``: the Hessian of the deviance is positive definite and not nearly
  singular (eigenvalue ratio at most 1e6, lme4's);
- ``pirls``: the penalised IRLS found the conditional modes at the optimum (GLMMs);
- ``dispersion``: the dispersion parameter is not on the boundary of its space, nor
  the family's own parameters at a limit of the model (a t's df -> infinity,
  Tweedie's power -> 1 or 2);
- ``separation``: no complete or quasi-complete separation in the fixed effects
  (binomial, ordinal and multinomial models; ``glmmbench.engine.separation``);
- ``large_coefficients``: no fixed effect or standard error beyond ``LARGE_EFFECT`` on
  the link scale per standard deviation of its column (models with a non-identity
  link; an intercept is compared as it is);
- ``collinearity``: no fixed-effect column with a variance inflation factor above
  ``MAX_VIF``;
- ``scale``: the columns of X are on comparable scales (lme4's ``checkScaleX``);
- ``groups``: every grouping factor has at least ``MIN_LEVELS`` levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from glmmbench.engine.optimize import GRAD_TOL, MAX_EIGENVALUE_RATIO
from glmmbench.inference.profile import sdcor_names
from glmmbench.model.design import scale_message

if TYPE_CHECKING:
    from glmmbench.results import GLMMResult

__all__ = ["diagnostics", "LARGE_EFFECT",
           "MAX_VIF", "MIN_LEVELS"]

LARGE_EFFECT = 10.0  # link-scale change per sd of a column (logit: an odds ratio e^10)
LARGE_INTERCEPT = 15.0  # |intercept| on the link scale (logit: p ~ 3e-7)
MAX_VIF = 10.0
MIN_LEVELS = 5  # fewer groups than this hardly estimate a variance

COLUMNS = ["check", "verdict", "value", "message"]


def diagnostics(res: GLMMResult) -> pd.DataFrame:
    """The checks of the module docstring, one row each (columns ``check, verdict,
    value, message``), indexed by check."""
    checks = res.optinfo.get("checks", {})
    rows = [_convergence(res), _singular(res, checks), _gradient(checks),
            _hessian(checks), _pirls(res, checks), _dispersion(checks),
            _separation(res, checks), _large_coefficients(res), _collinearity(res),
            _scale(res), _groups(res)]
    return pd.DataFrame(rows, columns=COLUMNS).set_index("check", drop=False)


def _row(check: str, ok: bool | None, value, message: str) -> dict:
    verdict = "n/a" if ok is None else ("pass" if ok else "fail")
    return {"check": check, "verdict": verdict, "value": value, "message": message}


def _convergence(res: GLMMResult) -> dict:
    if res.converged:
        return _row("convergence", True, True, "the optimizer converged")
    why = "; ".join(m for m in res.messages if "converge" in m or "separation" in m)
    return _row("convergence", False, False, "the fit did not converge" +
                (f": {why}" if why else ""))


def _singular(res: GLMMResult, checks: dict) -> dict:
    if "singular" not in checks:
        return _row("singular", None, None, "not computed (calc_derivs=False)")
    at_zero = [i for i in checks["singular"] if i < res.theta.size]
    if not at_zero:
        return _row("singular", True, 0, "no variance at 0, no correlation at -+1")
    names = sdcor_names(res.design, False)
    labels = _theta_labels(res)
    which = ", ".join(f"{names[i]} ({labels[i]})" for i in at_zero)
    return _row("singular", False, len(at_zero),
                f"boundary (singular) fit: {which} estimated at 0: the random effects ask "
                "for more than the data support; consider a simpler random-effect term")


def _theta_labels(res: GLMMResult) -> list[str]:
    """What each theta position scales: ``sd (Intercept) | herd``."""
    out = []
    for t in res.design.terms:
        if t.smooth is not None:
            out.append(f"sd {t.smooth}")
            continue
        for j in range(t.q):
            for i in range(j, t.q):
                out.append(f"sd {t.cnames[i]} | {t.group}" if i == j
                           else f"cor {t.cnames[i]}, {t.cnames[j]} | {t.group}")
    return out


def _gradient(checks: dict) -> dict:
    g = checks.get("gradient")
    if g is None:
        return _row("gradient", None, None, "no scaled gradient (no derivatives, or the "
                    "Hessian has no Cholesky factor: see the hessian check)")
    if g <= GRAD_TOL:
        return _row("gradient", True, g, f"scaled gradient {g:.2g} <= {GRAD_TOL}")
    return _row("gradient", False, g,
                f"scaled gradient {g:.3g} > {GRAD_TOL} (component "
                f"{checks['gradient_component'] + 1}): the optimizer stopped short of the "
                "optimum; refit from the estimates or rescale the covariates")


def _hessian(checks: dict) -> dict:
    if "finite" not in checks:
        return _row("hessian", None, None, "not computed (calc_derivs=False)")
    if checks.get("nchecked") == 0:
        return _row("hessian", None, None, "every parameter is on its boundary")
    if not checks["finite"]:
        return _row("hessian", False, None, "the deviance is not finite near the optimum")
    neg, ratio = checks["negative_eigenvalues"], checks["eigenvalue_ratio"]
    if neg:
        return _row("hessian", False, ratio, f"the Hessian has {neg} negative eigenvalue(s): "
                    "the estimate is not a minimum of the deviance")
    if ratio is None or ratio > MAX_EIGENVALUE_RATIO:
        return _row("hessian", False, ratio,
                    "the Hessian is nearly singular (eigenvalue ratio "
                    f"{'inf' if ratio is None else f'{ratio:.3g}'}): some parameters are "
                    "not identified by the data (rescale covariates, simplify the model)")
    return _row("hessian", True, ratio, f"positive definite, eigenvalue ratio {ratio:.3g}")


def _pirls(res: GLMMResult, checks: dict) -> dict:
    if res.is_lmm:
        return _row("pirls", None, None, "linear mixed model: no PIRLS")
    if checks.get("pirls_converged", True):
        return _row("pirls", True, True, "the conditional modes converged at the optimum")
    return _row("pirls", False, False, "PIRLS did not converge at the optimum: the "
                "conditional modes are unreliable (separation, or a mode on the boundary "
                "of the link's domain)")


def _dispersion(checks: dict) -> dict:
    msg, psi = checks.get("dispersion_boundary"), checks.get("family_param_boundary")
    if msg is None and psi is None:
        return _row("dispersion", None, None, "the family has no dispersion parameter")
    if msg or psi:
        return _row("dispersion", False, None, "; ".join(m for m in (msg, psi) if m))
    return _row("dispersion", True, None, "the dispersion (and the family's own "
                "parameters) inside the parameter space")


def _separation(res: GLMMResult, checks: dict) -> dict:
    sep = checks.get("separation")
    if sep is None:
        return _row("separation", None, None,
                    f"does not apply to a {res.family.name} model")
    if not sep["coefficients"]:
        return _row("separation", True, 0, "no separation in the fixed effects")
    return _row("separation", False, len(sep["coefficients"]), sep["message"])


def _parametric_X(res: GLMMResult) -> tuple[np.ndarray, list[str]]:
    d = res.design
    if res.family.multivariate:  # one block of rows per category: the first
        K1 = len(d.response_levels) - 1
        p = d.p // K1
        return d.X[::K1, :p], [n.split("~", 1)[1] for n in d.fixef_names[:p]]
    par = d.parametric
    return d.X[:, par], [d.fixef_names[j] for j in par]


def _large_coefficients(res: GLMMResult) -> dict:
    link = res.family.link.name
    if link == "identity":
        return _row("large_coefficients", None, None,
                    "identity link: coefficients are on the response's own scale")
    X, _ = _parametric_X(res)
    beta, se = res.fixef.to_numpy(), res.se.to_numpy()
    if res.family.multivariate:
        X = np.tile(X, (1, beta.size // X.shape[1]))
    sd = X.std(axis=0)
    size = np.where(sd > 0, np.abs(beta) * sd, np.abs(beta))
    se_size = np.where(sd > 0, se * sd, se)
    limit = np.where(sd > 0, LARGE_EFFECT, LARGE_INTERCEPT)
    bad = [n for n, a, s, lim in zip(res.fixef.index, size, se_size, limit, strict=True)
           if not (a <= lim and s <= lim)]
    worst = float(np.nanmax(np.concatenate([size, se_size]))) if size.size else 0.0
    if not bad:
        return _row("large_coefficients", True, worst,
                    f"every coefficient and SE within {LARGE_EFFECT:g} on the {link} scale "
                    "per sd of its column")
    return _row("large_coefficients", False, worst,
                f"very large coefficients or standard errors on the {link} scale: "
                f"{', '.join(bad)} (separation, or a covariate with almost no variation?)")


def _collinearity(res: GLMMResult) -> dict:
    X, names = _parametric_X(res)
    keep = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    if len(keep) < 2:
        return _row("collinearity", True, 1.0, "fewer than two varying fixed-effect columns")
    C = np.corrcoef(X[:, keep], rowvar=False)
    try:
        vif = np.diag(np.linalg.inv(C))
    except np.linalg.LinAlgError:
        vif = np.full(len(keep), np.inf)
    worst = float(np.max(vif))
    bad = [f"{names[keep[k]]} (VIF {v:.3g})" for k, v in enumerate(vif) if not v <= MAX_VIF]
    if not bad:
        return _row("collinearity", True, worst, f"every VIF <= {MAX_VIF:g}")
    return _row("collinearity", False, worst,
                f"near-collinear fixed effects: {', '.join(bad)}: their estimates and SEs "
                "are unstable; drop or combine columns")


def _scale(res: GLMMResult) -> dict:
    X, names = _parametric_X(res)
    msg = scale_message(X, names)
    if msg is None:
        return _row("scale", True, None, "the fixed-effect columns are on comparable scales")
    return _row("scale", False, None, msg)


def _groups(res: GLMMResult) -> dict:
    few = {g: n for g, n in res.ngroups.items() if n < MIN_LEVELS}
    smallest = min(res.ngroups.values()) if res.ngroups else None
    if not few:
        return _row("groups", True, smallest,
                    f"every grouping factor has at least {MIN_LEVELS} levels")
    which = ", ".join(f"{g} ({n} levels)" for g, n in few.items())
    return _row("groups", False, smallest,
                f"too few groups: {which}: a variance from fewer than {MIN_LEVELS} groups "
                "is poorly estimated (often at 0); consider a fixed effect instead")


