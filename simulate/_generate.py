"""generate(): one data set with its known truth from a scenario and a generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._catalogue import SCENARIOS
from ._design import Layout, draw_covariates, draw_layout, level_labels
from ._responses import RESPONSES
from ._scenario import Scenario
from ._smooths import SMOOTHS
from ._truth import Term, formula, lme4_order, random_terms, truth


@dataclass(frozen=True)
class SimulatedData:
    """A simulated data set and the model that generated it.

    Attributes
    ----------
    data
        One row per observation: the response (``y``; binomial with trials also
        ``n``), covariates ``x`` (and ``z``), grouping factors ``g`` (and ``c`` or
        ``h``, and ``obs``) as ``pd.Categorical`` with string levels in natural
        order. Ordinal ``y`` is an ordered categorical ``"1".."K"``, multinomial
        ``y`` an unordered one ``"a", "b", ...``.
    formula, family, link
        The true model in lme4 syntax, the family and the link by R's name.
    truth
        ``fixef`` {R name: value}; ``varcorr`` rows as R's
        ``as.data.frame(VarCorr(fit))`` in lme4's term order (multinomial: one
        variance row per category, ``var1 = "b~(Intercept)"``); and where they
        apply ``thresholds`` {``"1|2"``: value}, ``smooth`` (term, name, grid,
        centred values), ``dispersion`` (the value glmmTMB's ``sigma()`` estimates:
        NB2 ``theta``, NB1 ``phi``, Gamma coefficient of variation ``1 /
        sqrt(shape)``), ``sigma`` (Gaussian). JSON-serializable.
    ranef
        The realised random effects: {grp: DataFrame indexed by level, one column
        per coefficient}, ``grp`` as in ``truth["varcorr"]``.
    eta
        The conditional linear predictor, ``(nobs,)`` or, for multinomial,
        ``(nobs, n_categories - 1)``.
    scenario
        The knobs it was drawn from.
    dispformula
        The true dispersion model (``"~ x"`` with ``disp_slope``), None without one.
    """

    data: pd.DataFrame
    formula: str
    family: str
    link: str
    truth: dict
    ranef: dict[str, pd.DataFrame]
    eta: np.ndarray
    scenario: Scenario
    dispformula: str | None = None


def generate(scenario: Scenario | str, rng: np.random.Generator) -> SimulatedData:
    """Draw one data set from ``scenario`` (a Scenario or a name in SCENARIOS).

    Everything random comes from ``rng``, so the same generator state gives the
    same data; nothing touches global random state.
    """
    s = _resolve(scenario)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    layout = draw_layout(s, rng)
    cov = draw_covariates(s, layout, rng)
    codes = {"g": layout.g, "g2": layout.g2, "obs": np.arange(layout.nobs)}
    nlevels = {"g": s.n_groups, "g2": s.n_groups2, "obs": layout.nobs}
    terms = lme4_order(random_terms(s), nlevels)
    eta = _fixed_part(s, cov)
    ranef = {}
    for term in terms:
        b = _draw_term(rng, term, nlevels[term.factor])
        idx = codes[term.factor]
        contribution = b[idx, 0] + (b[idx, 1] * cov["x"] if term.slope else 0.0)
        eta[:, term.column] += contribution
        ranef[term.grp] = _ranef_frame(ranef.get(term.grp), term, b, _labels(s, term, layout))
    if s.family != "multinomial":
        eta = eta[:, 0]
    k = 1.0 if s.disp_slope is None else np.exp(s.disp_slope * cov["x"])
    response = RESPONSES[s.family](rng, s, eta, k)
    data = _frame(s, layout, cov, response)
    return SimulatedData(data=data, formula=formula(s), family=s.family,
                         link=s.resolved_link, truth=truth(s, terms), ranef=ranef,
                         eta=eta, scenario=s,
                         dispformula=None if s.disp_slope is None else "~ x")


def _resolve(scenario: Scenario | str) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str) and scenario in SCENARIOS:
        return SCENARIOS[scenario]
    raise ValueError(f"scenario: unknown name {scenario!r}; known: {sorted(SCENARIOS)}")


def _fixed_part(s: Scenario, cov: dict) -> np.ndarray:
    """``X beta`` (plus the true smooth), one column per linear predictor."""
    eta = np.zeros((cov["x"].size, s.n_coef_sets))
    for j in range(s.n_coef_sets):
        def coef(v, j=j):
            return v[j] if isinstance(v, tuple) else v

        eta[:, j] = coef(s.intercept)
        if s.smooth is None:
            eta[:, j] += coef(s.beta_x) * cov["x"]
        else:
            eta[:, j] += SMOOTHS[s.smooth](cov["x"])
        if s.beta_z is not None:
            eta[:, j] += coef(s.beta_z) * cov["z"]
    return eta


def _draw_term(rng: np.random.Generator, term: Term, nlevels: int) -> np.ndarray:
    """Draws ``(nlevels, q)`` from N(0, cov); built from the correlation's Cholesky
    factor so that zero variances are allowed."""
    corr_chol = np.linalg.cholesky(np.array([[1.0, term.cor], [term.cor, 1.0]]))
    q = len(term.sd)
    z = rng.standard_normal((nlevels, q))
    return (z @ corr_chol[:q, :q].T) * np.asarray(term.sd)


def _labels(s: Scenario, term: Term, layout: Layout) -> list[str]:
    if term.factor == "g":
        labels = level_labels("g", s.n_groups)
        if term.grp == "g:c":
            cluster = level_labels("c", s.n_groups2)
            of_group = np.arange(s.n_groups) * s.n_groups2 // s.n_groups
            labels = [f"{g}:{cluster[c]}" for g, c in zip(labels, of_group, strict=True)]
        return labels
    if term.factor == "g2":
        return level_labels(term.grp, s.n_groups2)
    return level_labels("o", layout.nobs)


def _ranef_frame(prev: pd.DataFrame | None, term: Term, b: np.ndarray,
                 labels: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(b, index=pd.Index(labels, name=term.grp), columns=list(term.names))
    return frame if prev is None else pd.concat([prev, frame], axis=1)


def _factor(codes: np.ndarray, labels: list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=labels)


def _frame(s: Scenario, layout: Layout, cov: dict, response: dict) -> pd.DataFrame:
    cols = dict(response)
    cols.update(cov)
    cols["g"] = _factor(layout.g, level_labels("g", s.n_groups))
    if s.design != "single":
        prefix = "c" if s.design == "nested" else "h"
        cols[prefix] = _factor(layout.g2, level_labels(prefix, s.n_groups2))
    if s.var_obs is not None:
        cols["obs"] = _factor(np.arange(layout.nobs), level_labels("o", layout.nobs))
    return pd.DataFrame(cols)
