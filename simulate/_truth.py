"""The true model of a scenario, in R's vocabulary: formula, coefficient names,
random-effect terms and ``as.data.frame(VarCorr(.))`` rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._scenario import DISP_FAMILIES, Scenario
from ._smooths import SMOOTH_GRID, SMOOTHS


@dataclass(frozen=True)
class Term:
    """One random-effect term ``(1 | grp)`` or ``(1 + x | grp)``.

    ``factor`` says which grouping codes it uses (``g``, ``g2`` or ``obs``);
    ``column`` is the linear predictor it enters (the category for multinomial).
    """

    grp: str
    factor: str
    names: tuple[str, ...]
    var: tuple[float, ...]
    cor: float
    column: int = 0

    @property
    def slope(self) -> bool:
        return len(self.names) == 2

    @property
    def sd(self) -> tuple[float, ...]:
        return tuple(float(np.sqrt(v)) for v in self.var)

    @property
    def covariance(self) -> float:
        """Covariance of the intercept and the slope (0 without a slope)."""
        return self.cor * self.sd[0] * self.sd[1] if self.slope else 0.0


def category_labels(s: Scenario) -> list[str]:
    """Response levels: ``"1".."K"`` for ordinal, ``"a", "b", ...`` for multinomial."""
    if s.family == "multinomial":
        if s.n_categories <= 26:
            return [chr(ord("a") + k) for k in range(s.n_categories)]
        return [f"k{k:0{len(str(s.n_categories))}d}" for k in range(1, s.n_categories + 1)]
    return [str(k) for k in range(1, s.n_categories + 1)]


def fixed_terms(s: Scenario) -> list[str]:
    """Fixed-effect terms in R's column order (no smooth, no intercept for ordinal)."""
    terms = [] if s.family == "ordinal" else ["(Intercept)"]
    if s.smooth is None:
        terms.append("x")
    if s.beta_z is not None:
        terms.append("z")
    return terms


def fixef(s: Scenario) -> dict[str, float]:
    """True fixed effects by R's names; multinomial ``category~term`` vs level 1."""
    values = {"(Intercept)": s.intercept, "x": s.beta_x, "z": s.beta_z}
    terms = fixed_terms(s)
    if s.family != "multinomial":
        return {t: float(values[t]) for t in terms}
    out = {}
    for k, cat in enumerate(category_labels(s)[1:]):
        for t in terms:
            v = values[t]
            out[f"{cat}~{t}"] = float(v[k] if isinstance(v, tuple) else v)
    return out


def random_terms(s: Scenario) -> list[Term]:
    """Random-effect terms in the order the formula expands them (lme4's findbars)."""
    v0 = float(s.var_intercept)
    if s.family == "multinomial":
        return [Term("g", "g", (f"{cat}~(Intercept)",), (v0,), 0.0, column=k)
                for k, cat in enumerate(category_labels(s)[1:])]
    terms = []
    if s.design == "nested":
        # (1 | c/g) is (1 | c) + (1 | g:c)
        terms.append(Term("c", "g2", ("(Intercept)",), (float(s.var_group2),), 0.0))
    grp = "g:c" if s.design == "nested" else "g"
    if s.var_slope is None:
        terms.append(Term(grp, "g", ("(Intercept)",), (v0,), 0.0))
    else:
        terms.append(Term(grp, "g", ("(Intercept)", "x"), (v0, float(s.var_slope)),
                          float(s.cor_slope)))
    if s.design == "crossed":
        terms.append(Term("h", "g2", ("(Intercept)",), (float(s.var_group2),), 0.0))
    if s.var_obs is not None:
        terms.append(Term("obs", "obs", ("(Intercept)",), (float(s.var_obs),), 0.0))
    return terms


def lme4_order(terms: list[Term], nlevels: dict[str, int]) -> list[Term]:
    """lme4's mkReTrms order: if any term has more levels than the one before it,
    ``rev(order(nl))`` (decreasing levels; ties end up in reverse formula order)."""
    nl = [nlevels[t.factor] for t in terms]
    if not any(b > a for a, b in zip(nl, nl[1:], strict=False)):
        return list(terms)
    ascending = sorted(range(len(terms)), key=lambda i: nl[i])  # stable, as R's order()
    return [terms[i] for i in reversed(ascending)]


def varcorr(s: Scenario, terms: list[Term]) -> list[dict]:
    """Rows of R's ``as.data.frame(VarCorr(fit))``: per term the variances, then the
    covariance (``sdcor`` the correlation); for Gaussian a final ``Residual`` row."""
    rows = []
    for t in terms:
        for name, var, sd in zip(t.names, t.var, t.sd, strict=True):
            rows.append(_row(t.grp, name, None, var, sd))
        if t.slope:
            rows.append(_row(t.grp, t.names[0], t.names[1], t.covariance, t.cor))
    if s.family == "gaussian" and s.disp_slope is None:
        rows.append(_row("Residual", None, None, s.sigma**2, s.sigma))
    return rows


def _row(grp, var1, var2, vcov, sdcor) -> dict:
    return {"grp": grp, "var1": var1, "var2": var2, "vcov": float(vcov), "sdcor": float(sdcor)}


def formula(s: Scenario) -> str:
    """The true model in lme4 syntax."""
    if s.family in ("binomial", "betabinomial") and s.trials > 1:
        lhs = "cbind(y, n - y)"
    else:
        lhs = "y"
    rhs = ["s(x)" if s.smooth is not None else "x"]
    if s.beta_z is not None:
        rhs.append("z")
    rhs.append("(1 | g)" if s.var_slope is None else "(1 + x | g)")
    if s.design == "nested":
        rhs[-1] = rhs[-1].replace("| g)", "| c/g)")
    elif s.design == "crossed":
        rhs.append("(1 | h)")
    if s.var_obs is not None:
        rhs.append("(1 | obs)")
    return f"{lhs} ~ {' + '.join(rhs)}"


def smooth_truth(s: Scenario) -> dict:
    """The true smooth, centred (zero mean over x ~ U(0, 1)), on a fixed grid."""
    f = SMOOTHS[s.smooth]
    return {"term": "s(x)", "name": s.smooth, "grid": SMOOTH_GRID.tolist(),
            "values": f(SMOOTH_GRID).tolist()}


def truth(s: Scenario, terms: list[Term]) -> dict:
    """The known truth; keys that do not apply to the family are absent."""
    out = {"fixef": fixef(s), "varcorr": varcorr(s, terms)}
    if s.family == "ordinal":
        labels = category_labels(s)
        names = [f"{a}|{b}" for a, b in zip(labels[:-1], labels[1:], strict=True)]
        out["thresholds"] = dict(zip(names, s.resolved_thresholds, strict=True))
    if s.smooth is not None:
        out["smooth"] = smooth_truth(s)
    # "dispersion" is what glmmTMB's sigma() estimates: NB2 theta, NB1 phi, Gamma CV,
    # beta's precision, genpois's phi (the truncated families: their parents')
    if s.family in ("negative_binomial", "truncated_nbinom2"):
        out["dispersion"] = float(s.nb_theta)
    elif s.family in ("nbinom1", "truncated_nbinom1"):
        out["dispersion"] = float(s.nb_phi)
    elif s.family in ("beta", "betabinomial"):
        out["dispersion"] = float(s.beta_phi)
    elif s.family == "ordbeta":
        out["dispersion"] = float(s.beta_phi)
        out["family_params"] = {"lower cutoff": float(1 / (1 + np.exp(-s.ob_cuts[0]))),
                                "upper cutoff": float(1 / (1 + np.exp(-s.ob_cuts[1])))}
    elif s.family == "genpois":
        out["dispersion"] = float(s.gp_phi)
    elif s.family == "compois":
        out["dispersion"] = float(s.cp_phi)
    elif s.family == "t":
        out["dispersion"] = float(s.sigma)
        out["family_params"] = {"Student-t df": float(s.t_df)}
    elif s.family == "tweedie":
        out["dispersion"] = float(s.tw_phi)
        out["family_params"] = {"Tweedie power": float(s.tw_power)}
    elif s.family == "Gamma":
        out["dispersion"] = float(1.0 / np.sqrt(s.gamma_shape))
    if s.family == "gaussian":
        out["sigma"] = float(s.sigma)
    if s.disp_slope is not None:
        # glmmTMB's fixef(m)$disp; sigma() is NA there, so no single dispersion
        out.pop("dispersion", None)
        out.pop("sigma", None)
        out["fixef_disp"] = {"(Intercept)": float(DISP_FAMILIES[s.family](s)),
                             "x": float(s.disp_slope)}
    return out
