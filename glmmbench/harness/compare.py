"""Study metrics: pure functions from the fits table to tidy tables.

The input everywhere is the fits table, one row per fit as `Store.frame` gives
it (columns ``problem, replicate, engine, family, link, formula, nagq, status,
converged, loglik, time_s, message, record, truth``; ``record`` the FitRecord
dict, ``truth`` the simulated truth or None).

- `estimates`: the long table of what each fit estimated.
- `parity`: native minus R for everything both records estimate (loglik, fixef,
  thresholds, their se, variance components ``sdcor`` by grp/var1/var2, sigma,
  family parameters, smooths' edf), each pair from the same replicate; a name on
  one side only is a failure row. Judged by a named two-sided tolerance per
  quantity and by the `reference_r.known_discrepancies` entries whose rules apply
  (`judge`): a sized entry excuses a gap up to its size, a ``"definition"`` entry
  makes the pair not comparable (counted apart). `parity_summary` per problem and
  engine.
- `recovery`: bias, RMSE and 95% Wald-interval coverage against the truth.
- `agq_nodes`: estimates and log-likelihood against the number of AGQ nodes.
- `speed`: native / R time ratio in the same replicate; `speed_summary`.
- `status_counts`, `status_table`: convergence and failures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmmbench.harness.catalogue import NATIVE, problem_family

__all__ = [
    "PARITY_TOL",
    "QUANTITIES",
    "SE_QUANTITY",
    "agq_nodes",
    "Judgement",
    "Tolerance",
    "WALD_Z",
    "estimates",
    "excuses",
    "geomean",
    "judge",
    "known_for",
    "model_class",
    "parity",
    "parity_summary",
    "recovery",
    "speed",
    "speed_summary",
    "status_counts",
    "status_table",
    "vc_name",
    "verdict",
]

WALD_Z = 1.959963984540054  # standard normal 0.975 quantile: 95% intervals


@dataclass(frozen=True)
class Tolerance:
    """``|native - R| <= atol + rtol * |R|``."""

    atol: float
    rtol: float

    def ok(self, diff: float, ref: float) -> bool:
        return abs(diff) <= self.atol + self.rtol * abs(ref)


# Every tolerance is two-sided. The log-likelihood is tight (about lme4's own PIRLS
# tolerance, see lme4-laplace-pirls-tolerance): a native value above R's beyond it is
# a failure unless a known discrepancy of that size and sign says R stops short
# (glmer does, on larger models; glmmTMB gets no such slack). Estimates looser; se and
# variance components, which come from curvature and sit near boundaries, loosest.
PARITY_TOL: dict[str, Tolerance] = {
    "loglik": Tolerance(atol=1e-3, rtol=1e-7),
    "fixef": Tolerance(atol=1e-4, rtol=1e-3),
    "threshold": Tolerance(atol=1e-4, rtol=1e-3),
    "fixef_zi": Tolerance(atol=1e-4, rtol=1e-3),
    "fixef_disp": Tolerance(atol=1e-4, rtol=1e-3),
    "se": Tolerance(atol=1e-4, rtol=1e-2),
    "se_zi": Tolerance(atol=1e-4, rtol=1e-2),
    "se_disp": Tolerance(atol=1e-4, rtol=1e-2),
    "sdcor": Tolerance(atol=1e-3, rtol=1e-2),
    "sigma": Tolerance(atol=1e-4, rtol=5e-3),
    "family_param": Tolerance(atol=1e-4, rtol=5e-3),
    "edf": Tolerance(atol=1e-3, rtol=1e-2),
}

_EST_COLS = ["problem", "replicate", "engine", "quantity", "name", "value", "se"]

# Coefficient groups of a record: field -> (quantity, field of their standard errors,
# quantity of those). Thresholds share ``se`` with the fixed effects (as clmm's).
_COEFFICIENTS = {
    "fixef": ("fixef", "se", "se"),
    "thresholds": ("threshold", "se", "se"),
    "fixef_zi": ("fixef_zi", "se_zi", "se_zi"),
    "fixef_disp": ("fixef_disp", "se_disp", "se_disp"),
}
SE_QUANTITY = {q: sq for q, _, sq in _COEFFICIENTS.values()}
QUANTITIES = ("loglik", "fixef", "threshold", "fixef_zi", "fixef_disp", "se", "se_zi",
              "se_disp", "sdcor", "sigma", "family_param", "edf")


# ------------------------------------------------------------------ estimates


def vc_name(grp: str | None, var1: str | None, var2: str | None) -> str:
    """Label of a varcorr row: ``sd(x|g)``, ``cor((Intercept),x|g)``, ``sigma``.

    lme4 numbers the terms of one factor (``g``, ``g.1`` for ``(x || g)``) where
    glmmTMB has one block ``g``; the suffix is dropped so rows match by factor
    and variable (glmmTMB-double-bar-one-group).
    """
    if grp == "Residual":
        return "sigma"
    base = re.sub(r"\.\d+$", "", grp or "")
    if var2 is None or (isinstance(var2, float) and math.isnan(var2)):
        return f"sd({var1}|{base})"
    return f"cor({var1},{var2}|{base})"


def _finite_or_none(v):
    return None if v is None or not np.isfinite(float(v)) else v


def _record_rows(rec: dict) -> list[tuple[str, str, float, float]]:
    """``(quantity, name, value, se)`` of everything a record estimates. A residual
    row of ``varcorr`` is not repeated: the record's ``sigma`` (glmmTMB's ``sigma()``
    for every family with a dispersion, None without) is the ``sigma`` row."""
    out = [("loglik", "loglik", rec.get("loglik"), np.nan)]
    for field, (quantity, se_field, _) in _COEFFICIENTS.items():
        se = rec.get(se_field) or {}
        out += [(quantity, k, v, se.get(k, np.nan)) for k, v in (rec.get(field) or {}).items()]
    seen = set()
    for row in rec.get("varcorr") or []:
        name = vc_name(row.get("grp"), row.get("var1"), row.get("var2"))
        if name not in seen and name != "sigma":
            seen.add(name)
            out.append(("sdcor", name, row.get("sdcor"), np.nan))
    if _finite_or_none(rec.get("sigma")) is not None:
        se = _finite_or_none(rec.get("sigma_se"))
        out.append(("sigma", "sigma", rec["sigma"], np.nan if se is None else se))
    family_se = rec.get("family_params_se") or {}
    out += [("family_param", k, v, np.nan if family_se.get(k) is None else family_se[k])
            for k, v in (rec.get("family_params") or {}).items()]
    out += [("edf", sm["term"], sm.get("edf"), np.nan) for sm in rec.get("smooths") or []]
    return out


def _as_float(v) -> float:
    return np.nan if v is None else float(v)


def estimates(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per estimated quantity of every successful fit.

    Columns ``problem, replicate, engine, quantity, name, value, se``;
    ``quantity`` is ``loglik``, ``fixef``, ``threshold`` (and ``fixef_zi``,
    ``fixef_disp`` where a record has them), ``sdcor`` (the sd or correlation of a
    varcorr row, named by `vc_name`), ``sigma`` (the family's dispersion as glmmTMB's
    ``sigma()``), ``family_param`` (a family's other parameters by name) or ``edf``
    (a smooth's effective degrees of freedom, named by its label); ``se`` the Wald
    standard error of a coefficient (NaN otherwise).
    """
    rows = []
    for fit in fits[fits["status"] == "ok"].itertuples(index=False):
        for quantity, name, value, se in _record_rows(fit.record):
            rows.append((fit.problem, int(fit.replicate), fit.engine, quantity, name,
                         _as_float(value), _as_float(se)))
    return pd.DataFrame(rows, columns=_EST_COLS)


# ------------------------------------------------------------------ parity

# quantity -> the record field a known discrepancy's ``gap`` names
_QUANTITY_FIELD = {"loglik": "loglik", "fixef": "fixef", "threshold": "thresholds",
                   "fixef_zi": "fixef_zi", "fixef_disp": "fixef_disp", "se": "se",
                   "se_zi": "se", "se_disp": "se", "sdcor": "varcorr", "sigma": "sigma",
                   "family_param": "family_params", "edf": "smooths"}


def excuses(entry: dict, quantity: str, diff: float | None = None,
            reference: float | None = None) -> bool:
    """Whether a known discrepancy's measured size explains a gap ``diff`` (native -
    R, R's value ``reference``) in ``quantity``: ``|diff| <= abs + rel |reference|``
    and, where the size has a ``sign``, ``diff`` of that sign. Never more than the
    size: the size is the largest gap measured in the entry's evidence. A
    ``"definition"`` gap excuses nothing (the pair is not comparable, `judge`).
    Without ``diff``, whether the entry has a size for the field."""
    size = entry.get("gap", {}).get(_QUANTITY_FIELD[quantity])
    if size is None or size == "definition":
        return False
    if diff is None:
        return True
    if not np.isfinite(diff):
        return False
    if size.get("sign") and np.sign(diff) not in (0.0, np.sign(size["sign"])):
        return False
    allowed = size.get("abs", 0.0) + size.get("rel", 0.0) * abs(reference or 0.0)
    return abs(diff) <= allowed


@dataclass(frozen=True)
class Judgement:
    """What the known discrepancies say of one comparison: ``known`` the ids whose
    size explains its gap, ``not_comparable`` the ids that say R reports another
    quantity or fits another model there, ``exceeded`` the ids that apply but whose
    size (or sign) does not cover the gap."""

    known: tuple[str, ...] = ()
    not_comparable: tuple[str, ...] = ()
    exceeded: tuple[str, ...] = ()


def judge(engine: str, quantity: str, model: dict, diff: float | None = None,
          reference: float | None = None) -> Judgement:
    """The known discrepancies that apply to one comparison of a native fit with R
    engine ``engine`` (each entry's rule, `reference_r.known_discrepancies.RULES`)
    and what each says of its gap."""
    from reference_r.known_discrepancies import KNOWN_DISCREPANCIES, applies

    field = _QUANTITY_FIELD[quantity]
    known, definition, exceeded = [], [], []
    for d in KNOWN_DISCREPANCIES:
        if field not in d["quantity"] or not applies(d["id"], engine, model):
            continue
        size = d["gap"].get(field)
        if size == "definition":
            definition.append(d["id"])
        elif size is not None and excuses(d, quantity, diff, reference):
            known.append(d["id"])
        else:
            exceeded.append(d["id"])
    return Judgement(tuple(known), tuple(definition), tuple(exceeded))


def known_for(engine: str, quantity: str, model: dict, diff: float | None = None,
              reference: float | None = None) -> list[str]:
    """Ids of the known discrepancies whose size explains the gap ``diff`` of one
    comparison (every sized one that applies when ``diff`` is None)."""
    return list(judge(engine, quantity, model, diff, reference).known)


_PARITY_COLS = ["problem", "replicate", "engine", "quantity", "name", "native", "reference",
                "diff", "rel_diff", "only", "within_tol", "comparable", "known",
                "not_comparable", "exceeded", "unexplained"]


def _pairs(est: pd.DataFrame) -> pd.DataFrame:
    """Native rows against each R engine's rows of the same problem and replicate,
    joined on (quantity, name) with both sides kept: a name one side lacks has NaN
    on the other and ``only`` = ``"native"`` or ``"R"``."""
    nat = est[est["engine"] == NATIVE].drop(columns="engine")
    ref = est[est["engine"] != NATIVE]
    fitted = ref[["problem", "replicate", "engine"]].drop_duplicates().merge(
        nat[["problem", "replicate"]].drop_duplicates())
    nat = fitted.merge(nat, on=["problem", "replicate"])
    ref = ref.merge(fitted, on=["problem", "replicate", "engine"])
    keys = ["problem", "replicate", "engine", "quantity", "name"]
    both = ref.merge(nat, on=keys, how="outer", suffixes=("_r", "_n"), indicator=True)
    both["only"] = both["_merge"].map({"both": "", "left_only": "R", "right_only": "native"})
    return both.drop(columns="_merge")


def parity(fits: pd.DataFrame, tol: dict[str, Tolerance] | None = None) -> pd.DataFrame:
    """Native minus each R engine, quantity by quantity, in the same replicate.

    Every name either fit estimates is a row: a name on one side only (``only`` says
    which) is outside tolerance, a failure unless a known discrepancy makes the pair
    not comparable; engines that name a thing differently are mapped to one name in
    ``reference_r`` (``names.py``, one table per engine) and `vc_name`. ``rel_diff``
    is ``diff / |R|``; ``within_tol`` applies ``tol[quantity]`` (default `PARITY_TOL`),
    two-sided. The known discrepancies that apply (`judge`): ``known`` those whose
    measured size explains the gap, ``not_comparable`` those that say R reports
    another quantity or model (``comparable`` False: counted apart, neither passed nor
    failed), ``exceeded`` those that apply but do not cover the gap (comma
    separated). ``unexplained``: comparable, outside tolerance, no ``known``.
    """
    tol = PARITY_TOL if tol is None else tol
    both = _pairs(estimates(fits))
    value = both.assign(native=both["value_n"], reference=both["value_r"])
    coef = both[both["quantity"].isin(list(SE_QUANTITY)) & (both["only"] == "")]
    se = coef.assign(quantity=coef["quantity"].map(SE_QUANTITY), native=coef["se_n"],
                     reference=coef["se_r"])
    cols = ["problem", "replicate", "engine", "quantity", "name", "native", "reference", "only"]
    out = pd.concat([value[cols], se[cols]], ignore_index=True)
    if out.empty:
        return pd.DataFrame(columns=_PARITY_COLS)
    out["native"] = _on_reference_scale(out, fits)
    out["diff"] = out["native"] - out["reference"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rel_diff"] = out["diff"] / out["reference"].abs()
    out["within_tol"] = [bool(tol[q].ok(d, r)) for q, d, r in
                         zip(out["quantity"], out["diff"], out["reference"], strict=True)]
    models = _models(fits)
    judged = [judge(e, q, models[(p, r, e)], d, ref) for p, r, e, q, d, ref in
              zip(out["problem"], out["replicate"], out["engine"], out["quantity"],
                  out["diff"], out["reference"], strict=True)]
    out["comparable"] = [not j.not_comparable for j in judged]
    out["known"] = [", ".join(j.known) if not w else "" for j, w in
                    zip(judged, out["within_tol"], strict=True)]
    out["not_comparable"] = [", ".join(j.not_comparable) for j in judged]
    out["exceeded"] = [", ".join(j.exceeded) if not w else ""
                       for j, w in zip(judged, out["within_tol"], strict=True)]
    out["unexplained"] = out["comparable"] & ~out["within_tol"] & (out["known"] == "")
    order = {q: i for i, q in enumerate(QUANTITIES)}
    out = out.sort_values(["problem", "engine", "replicate", "quantity"],
                          key=lambda s: s.map(order) if s.name == "quantity" else s,
                          kind="stable")
    return out[_PARITY_COLS].reset_index(drop=True)


def _on_reference_scale(out: pd.DataFrame, fits: pd.DataFrame) -> pd.Series:
    """Native log-likelihoods moved to lme4's AGQ scale where lme4 uses it.

    At ``nAGQ > 1`` lme4's ``logLik()`` leaves out the saturated log-likelihood
    (``lme4-agq-binomial-loglik``, ``lme4-agq-poisson-loglik``); the native record
    carries it (``loglik_saturated``), so the comparison is made on lme4's scale
    and the entry is still cited.
    """
    saturated = {(f.problem, int(f.replicate)): f.record.get("loglik_saturated")
                 for f in fits[(fits["engine"] == NATIVE) & (fits["status"] == "ok")]
                 .itertuples(index=False) if int(f.nagq or 1) > 1}
    native = out["native"].copy()
    for i, row in enumerate(out.itertuples(index=False)):
        sat = saturated.get((row.problem, int(row.replicate)))
        if row.quantity == "loglik" and row.engine == "lme4" and sat is not None:
            native.iloc[i] = row.native - sat
    return native


def _models(fits: pd.DataFrame) -> dict[tuple, dict]:
    """What the known discrepancies' rules read of each fit (`reference_r.
    known_discrepancies.RULES`): the model, the R fit's ``converged`` and, for a
    multinomial model, ``n_categories`` (from the record's ``category~term`` names)."""
    out = {}
    for f in fits.itertuples(index=False):
        model = {"family": f.family, "link": f.link, "nagq": f.nagq, "formula": f.formula,
                 "converged": None if pd.isna(f.converged) else bool(f.converged)}
        cats = ({k.split("~")[0] for k in (f.record.get("fixef") or {}) if "~" in k}
                if isinstance(f.record, dict) else set())
        if cats:  # a multinomial model's names are category~term
            model["n_categories"] = len(cats) + 1
        out[(f.problem, int(f.replicate), f.engine)] = model
    return out


def parity_summary(par: pd.DataFrame) -> pd.DataFrame:
    """Per problem and R engine: largest |native - R| per quantity, the largest
    relative se difference, how many comparable comparisons are within tolerance, how
    many are not comparable, the known discrepancies cited and the failures."""
    out = []
    for (problem, engine), g in par.groupby(["problem", "engine"], sort=False):
        row = {"problem": problem, "engine": engine, "replicates": g["replicate"].nunique()}
        c = g[g["comparable"]]
        for q in ("loglik", "fixef", "threshold", "sdcor", "sigma"):
            d = c.loc[c["quantity"] == q, "diff"].abs()
            row[f"max_abs_d_{q}"] = d.max() if len(d) else np.nan
        r = c.loc[c["quantity"] == "se", "rel_diff"].abs()
        row["max_rel_d_se"] = r.max() if len(r) else np.nan
        row["within_tol"] = f"{int(c['within_tol'].sum())}/{len(c)}"
        row["not_comparable"] = int((~g["comparable"]).sum())
        outside = c[~c["within_tol"]]
        ids = sorted({i for k in outside["known"] for i in k.split(", ") if i})
        row["outside_tol_explained_by"] = ", ".join(ids)
        row["unexplained"] = int(g["unexplained"].sum())
        out.append(row)
    cols = ["problem", "engine", "replicates", "max_abs_d_loglik", "max_abs_d_fixef",
            "max_abs_d_threshold", "max_rel_d_se", "max_abs_d_sdcor", "max_abs_d_sigma",
            "within_tol", "not_comparable", "outside_tol_explained_by", "unexplained"]
    return pd.DataFrame(out, columns=cols)


# ------------------------------------------------------------------ AGQ nodes


def agq_nodes(fits: pd.DataFrame, problems: dict[str, dict]) -> pd.DataFrame:
    """Estimates against the number of quadrature nodes.

    A series is the problems that share their data (``data_key``) and differ only
    in ``nagq``. Per series, engine and nagq, over the replicates: the mean of each
    estimate, and ``loglik_gap`` = mean of ``loglik(nagq) - loglik(largest nagq)``
    in the same replicate (lme4's AGQ values are first put back on the full scale
    with the native record's ``loglik_saturated``). Columns ``series, engine,
    nagq, replicates, quantity, name, mean``; ``quantity`` ``loglik_gap`` for the gap.
    """
    cols = ["series", "engine", "nagq", "replicates", "quantity", "name", "mean"]
    key = {name: spec.get("data_key") or name for name, spec in problems.items()}
    ok = fits[fits["status"] == "ok"].assign(series=lambda d: d["problem"].map(key))
    series = [s for s, g in ok.groupby("series") if g["nagq"].nunique() > 1]
    if not series:
        return pd.DataFrame(columns=cols)
    ok = ok[ok["series"].isin(series)]
    sat = {(f.series, int(f.replicate)): f.record.get("loglik_saturated")
           for f in ok[ok["engine"] == NATIVE].itertuples(index=False)}
    est = estimates(ok).merge(ok[["problem", "replicate", "engine", "series", "nagq"]],
                              on=["problem", "replicate", "engine"])
    ll = est[est["quantity"] == "loglik"].copy()
    shift = [sat.get((s, int(r))) or 0.0 if e == "lme4" and int(k) > 1 else 0.0
             for s, r, e, k in zip(ll["series"], ll["replicate"], ll["engine"], ll["nagq"],
                                   strict=True)]
    ll["value"] = ll["value"] + np.asarray(shift, dtype=float)
    top = ll.loc[ll.groupby(["series", "engine", "replicate"])["nagq"].idxmax()]
    ll = ll.merge(top[["series", "engine", "replicate", "value"]],
                  on=["series", "engine", "replicate"], suffixes=("", "_top"))
    ll = ll.assign(quantity="loglik_gap", name="loglik", value=ll["value"] - ll["value_top"])
    long = pd.concat([ll[est.columns], est[est["quantity"] != "loglik"]], ignore_index=True)
    g = long.groupby(["series", "engine", "nagq", "quantity", "name"], sort=False)
    out = g.agg(replicates=("replicate", "nunique"), mean=("value", "mean")).reset_index()
    order = {"loglik_gap": 0, "fixef": 1, "threshold": 2, "sdcor": 3}
    out = out.sort_values(["series", "engine", "quantity", "name", "nagq"],
                          key=lambda c: c.map(order) if c.name == "quantity" else c,
                          kind="stable")
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------ recovery


def _truth_rows(truth: dict) -> list[tuple[str, str, float]]:
    out = [("fixef", k, v) for k, v in (truth.get("fixef") or {}).items()]
    out += [("threshold", k, v) for k, v in (truth.get("thresholds") or {}).items()]
    out += [("fixef_disp", k, v) for k, v in (truth.get("fixef_disp") or {}).items()]
    if truth.get("dispersion") is not None:  # glmmTMB's sigma(): NB2's size, beta's phi...
        out.append(("sigma", "sigma", truth["dispersion"]))
    out += [("family_param", k, v) for k, v in (truth.get("family_params") or {}).items()]
    out += [("sdcor", vc_name(r.get("grp"), r.get("var1"), r.get("var2")), r["sdcor"])
            for r in truth.get("varcorr") or []]
    return out


def recovery(fits: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE and Wald coverage against the simulated truth, with their Monte
    Carlo standard errors.

    Per problem, engine, quantity and name over the n successful replicates, with
    ``e_i = est_i - truth``: ``bias = mean(e)``, ``rmse = sqrt(mean(e^2))``,
    ``coverage`` = share of replicates with ``|e_i| <= WALD_Z * se_i`` (fixef and
    thresholds; NaN for variance components). Monte Carlo standard errors (Morris,
    White & Crowther 2019, Stat Med 38:2074, table 6): ``bias_mcse = sd(e) / sqrt(n)``;
    ``rmse_mcse = sd(e^2) / sqrt(n) / (2 rmse)`` (the MSE's, by the delta method);
    ``coverage_mcse = sqrt(p (1 - p) / n)``.
    """
    truths = []
    for f in fits[fits["truth"].notna()].drop_duplicates(["problem", "replicate"]).itertuples():
        truths += [(f.problem, int(f.replicate), q, n, float(v))
                   for q, n, v in _truth_rows(f.truth)]
    cols = ["problem", "engine", "quantity", "name", "truth", "n", "mean", "bias", "bias_mcse",
            "rmse", "rmse_mcse", "coverage", "coverage_mcse"]
    if not truths:
        return pd.DataFrame(columns=cols)
    truth = pd.DataFrame(truths, columns=["problem", "replicate", "quantity", "name", "truth"])
    est = estimates(fits).merge(truth, on=["problem", "replicate", "quantity", "name"])
    err = est["value"] - est["truth"]
    est = est.assign(err=err, sq=err**2, covered=np.where(
        est["se"].notna(), (err.abs() <= WALD_Z * est["se"]).astype(float), np.nan))
    g = est.groupby(["problem", "engine", "quantity", "name"], sort=False)
    out = g.agg(truth=("truth", "first"), n=("value", "size"), mean=("value", "mean"),
                bias=("err", "mean"), sd_err=("err", "std"), mse=("sq", "mean"),
                sd_sq=("sq", "std"), coverage=("covered", "mean"),
                n_cov=("covered", "count"))
    out["rmse"] = np.sqrt(out["mse"])
    root_n = np.sqrt(out["n"])
    out["bias_mcse"] = out["sd_err"] / root_n
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rmse_mcse"] = out["sd_sq"] / root_n / (2.0 * out["rmse"])
        p = out["coverage"]
        out["coverage_mcse"] = np.sqrt(p * (1.0 - p) / out["n_cov"])
    return out.reset_index()[cols]


# ------------------------------------------------------------------ verdict

_FAMILY_CLASS = {"binomial": "binomial GLMM", "poisson": "Poisson GLMM",
                 "negative_binomial": "negative binomial GLMM",
                 "nbinom1": "negative binomial GLMM", "Gamma": "Gamma GLMM",
                 "beta": "beta GLMM (glmmTMB)",
                 "truncated_poisson": "zero-truncated counts (glmmTMB)",
                 "truncated_nbinom2": "zero-truncated counts (glmmTMB)",
                 "truncated_nbinom1": "zero-truncated counts (glmmTMB)",
                 "genpois": "generalized Poisson (glmmTMB)",
                 "compois": "Conway-Maxwell Poisson (glmmTMB)",
                 "betabinomial": "beta-binomial (glmmTMB)", "t": "Student t (glmmTMB)",
                 "ordbeta": "ordered beta (glmmTMB)",
                 "tweedie": "Tweedie (glmmTMB)",
                 "ordinal": "ordinal (clmm)", "multinomial": "multinomial"}


def _ids(col: pd.Series) -> list[str]:
    """The distinct ids in a column of comma-separated ids."""
    return sorted({i for k in col for i in k.split(", ") if i})


def model_class(family: str, link: str | None, nagq, formula: str | None) -> str:
    """The tutorial's model class of a problem: LMM, a GLMM family, AGQ, GAMM."""
    if re.search(r"\bs\(", formula or ""):
        return "GAMM (smooths)"
    if nagq is not None and int(nagq) > 1:
        return "adaptive quadrature (nagq > 1)"
    fam = problem_family(family, link)
    if fam is not None and fam.residual:
        return "LMM (Gaussian)" if fam.lmm else "Gaussian GLMM (link)"
    return _FAMILY_CLASS.get(family, family)


_VERDICT_COLS = ["model class", "problems", "native fits", "native status",
                 "parity within tolerance", "not comparable", "known discrepancies",
                 "failures",
                 "speed vs fastest R (median)", "coverage (native)"]


def verdict(fits: pd.DataFrame, par: pd.DataFrame, rec: pd.DataFrame,
            sp: pd.DataFrame) -> pd.DataFrame:
    """One row per model class: whether the native engine fits it (ok / fits), what
    those fits say of themselves besides ok (boundary, not converged, separation), parity
    within tolerance per R engine (n of the m comparable comparisons), the comparisons
    that are not comparable (R reports another quantity or model; with the ids that
    say so), the known discrepancies that explain gaps by their size, the failures
    (comparable, outside tolerance and unexplained; native errors), the median
    native / fastest-R time ratio per replicate, and the mean 95% Wald coverage of the
    native fixed effects and thresholds with the mean of their Monte Carlo SEs (the
    MC error of each; their mean's is no larger)."""
    classes = {(f.problem): model_class(f.family, f.link, f.nagq, f.formula)
               for f in fits.itertuples(index=False)}
    fastest = (sp.groupby(["problem", "replicate"]).agg(native_s=("native_s", "first"),
                                                         r_s=("r_s", "min"))
               if len(sp) else pd.DataFrame(columns=["native_s", "r_s"]))
    rows = []
    for cls in dict.fromkeys(classes[p] for p in fits["problem"]):
        probs = [p for p, c in classes.items() if c == cls]
        nat = fits[(fits["problem"].isin(probs)) & (fits["engine"] == NATIVE)]
        ok = int((nat["status"] == "ok").sum())
        # what the fits that ran say of themselves (store.FIT_STATUSES), "ok" left out
        said = (nat.loc[nat["status"] == "ok", "fit_status"].dropna()
                if "fit_status" in nat else pd.Series(dtype=object))
        status = ", ".join(f"{k} {n}" for k, n in said[said != "ok"].value_counts().items())
        g = par[par["problem"].isin(probs)]
        c = g[g["comparable"].astype(bool)]
        parity = "; ".join(f"{e} {int(h['within_tol'].sum())}/{len(h)}"
                           for e, h in c.groupby("engine")) or "-"
        apart = "; ".join(f"{e} {len(h)} ({', '.join(_ids(h['not_comparable']))})"
                          for e, h in g[~g["comparable"].astype(bool)].groupby("engine"))
        outside = c.loc[~c["within_tol"].astype(bool), "known"]
        known = sorted({i for k in outside for i in k.split(", ") if i})
        failures = int(g["unexplained"].astype(bool).sum()) + int((nat["status"] == "error")
                                                                  .sum())
        f = fastest[fastest.index.get_level_values(0).isin(probs)] if len(fastest) else fastest
        speed = float(np.median(f["native_s"] / f["r_s"])) if len(f) else np.nan
        c = rec[rec["problem"].isin(probs) & (rec["engine"] == NATIVE)
                & rec["quantity"].isin(["fixef", "threshold"])].dropna(subset=["coverage"])
        coverage = (f"{c['coverage'].mean():.3f} +- {c['coverage_mcse'].mean():.3f} "
                    f"({len(c)} coefficients)" if len(c) else "-")
        rows.append({"model class": cls, "problems": len(probs),
                     "native fits": f"{ok}/{len(nat)} ok", "native status": status or "-",
                     "parity within tolerance": parity, "not comparable": apart or "-",
                     "known discrepancies": ", ".join(known), "failures": failures,
                     "speed vs fastest R (median)": speed, "coverage (native)": coverage})
    return pd.DataFrame(rows, columns=_VERDICT_COLS)


# ------------------------------------------------------------------ speed


def speed(fits: pd.DataFrame) -> pd.DataFrame:
    """Native and R fit times of the same replicate and their ratio native / R."""
    ok = fits[(fits["status"] == "ok") & fits["time_s"].notna()]
    nat = ok[ok["engine"] == NATIVE][["problem", "replicate", "time_s"]]
    ref = ok[ok["engine"] != NATIVE][["problem", "replicate", "engine", "time_s"]]
    out = ref.merge(nat, on=["problem", "replicate"], suffixes=("_r", "_native"))
    out = out.rename(columns={"time_s_r": "r_s", "time_s_native": "native_s"})
    with np.errstate(divide="ignore"):
        out["ratio"] = out["native_s"] / out["r_s"]
    return out[["problem", "replicate", "engine", "native_s", "r_s", "ratio"]]


def geomean(x: pd.Series) -> float:
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else np.nan


def speed_summary(sp: pd.DataFrame) -> pd.DataFrame:
    """Per problem and R engine: median times and the geometric-mean ratio."""
    cols = ["problem", "engine", "n", "native_median_s", "r_median_s", "ratio_geomean"]
    if sp.empty:
        return pd.DataFrame(columns=cols)
    g = sp.groupby(["problem", "engine"], sort=False)
    out = g.agg(n=("ratio", "size"), native_median_s=("native_s", "median"),
                r_median_s=("r_s", "median"), ratio_geomean=("ratio", geomean))
    return out.reset_index()[cols]


# ------------------------------------------------------------------ status

_STATUS_COLS = ["fits", "ok", "converged", "not_converged", "unsupported", "error", "timeout"]


def _counts(g: pd.DataFrame) -> dict:
    ok = g["status"] == "ok"
    conv = g["converged"].fillna(False).astype(bool)
    return {"fits": len(g), "ok": int(ok.sum()), "converged": int((ok & conv).sum()),
            "not_converged": int((ok & ~conv).sum()),
            "unsupported": int((g["status"] == "unsupported").sum()),
            "error": int((g["status"] == "error").sum()),
            "timeout": int((g["status"] == "timeout").sum())}


def status_counts(fits: pd.DataFrame) -> pd.DataFrame:
    """Per engine: fits, ok, converged, not converged, unsupported, errors, timeouts."""
    rows = [{"engine": e, **_counts(g)} for e, g in fits.groupby("engine", sort=True)]
    return pd.DataFrame(rows, columns=["engine", *_STATUS_COLS])


def status_table(fits: pd.DataFrame) -> pd.DataFrame:
    """Per problem and engine: the counts and a one-line verdict with the first
    message of a fit that did not succeed (``not supported: ...``)."""
    rows = []
    for (problem, engine), g in fits.groupby(["problem", "engine"], sort=False):
        c = _counts(g)
        bad = g[g["status"] != "ok"]
        if c["unsupported"] == c["fits"]:
            verdict = "not supported"
        elif c["ok"] == c["fits"]:
            verdict = "ok" if c["converged"] == c["fits"] else "ok, some not converged"
        else:
            verdict = "failures"
        note = bad["message"].iloc[0] if len(bad) else ""
        rows.append({"problem": problem, "engine": engine, **c, "verdict": verdict,
                     "message": note})
    return pd.DataFrame(rows, columns=["problem", "engine", *_STATUS_COLS, "verdict",
                                       "message"])
