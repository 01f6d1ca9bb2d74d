"""`fit_reference`: one R reference fit, returned as a FitRecord dict."""

from __future__ import annotations

import pandas as pd

from . import names as nm
from .worker import request

__all__ = ["describe_in_r", "fit_reference"]

ENGINES = ("lme4", "glmmTMB", "ordinal", "mgcv", "gamm4")
LINKS = {
    "gaussian": {"identity", "log", "inverse"},
    "binomial": {"logit", "probit", "cloglog", "cauchit", "log"},
    "poisson": {"log", "identity", "sqrt"},
    "negative_binomial": {"log", "identity", "sqrt"},
    "nbinom1": {"log", "identity", "sqrt"},
    "Gamma": {"inverse", "identity", "log"},
    "beta": {"logit", "probit", "cloglog"},
    "truncated_poisson": {"log"},
    "truncated_nbinom2": {"log"},
    "truncated_nbinom1": {"log"},
    "genpois": {"log"},
    "t": {"identity", "log", "inverse"},
    "tweedie": {"log"},
    "betabinomial": {"logit", "probit", "cloglog"},
    "ordbeta": {"logit"},
    "compois": {"log"},
    "ordinal": {"logit", "probit", "cloglog", "loglog", "cauchit"},
    "multinomial": {"logit"},
}
# Options each engine accepts beyond the common arguments. `r_sleep` (seconds R
# sleeps before the fit) exists to exercise timeouts.
OPTIONS = {
    "lme4": {"r_sleep"},
    "glmmTMB": {"r_sleep", "dispformula"},
    "ordinal": {"r_sleep", "threshold"},
    "mgcv": {"r_sleep", "method"},
    "gamm4": {"r_sleep"},
}
THRESHOLDS = {"flexible", "equidistant", "symmetric"}


def _check(engine, family, link, nagq, options) -> tuple[str, str]:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    family = nm.FAMILY_ALIASES.get(family, family)
    if family not in nm.ENGINE_FAMILIES[engine]:
        fams = ", ".join(sorted(nm.ENGINE_FAMILIES[engine]))
        raise ValueError(f"engine {engine!r} does not fit family {family!r}; it fits {fams}")
    link = link or nm.DEFAULT_LINK[family]
    if link not in LINKS[family]:
        raise ValueError(f"link {link!r} is not available for family {family!r}")
    if engine == "lme4" and family == "negative_binomial" and link != "log":
        raise ValueError("lme4::glmer.nb fits the log link only")
    unknown = set(options) - OPTIONS[engine]
    if unknown:
        raise TypeError(f"engine {engine!r} takes no option(s) {sorted(unknown)}")
    if "threshold" in options and options["threshold"] not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {sorted(THRESHOLDS)}")
    if int(nagq) != nagq or nagq < 0:
        raise ValueError(f"nagq must be a non-negative integer, got {nagq!r}")
    if nagq == 0 and engine != "lme4":
        raise ValueError(f"engine {engine!r} has no nAGQ = 0 (only glmer does)")
    if nagq > 1 and engine not in ("lme4", "ordinal"):
        raise ValueError(f"engine {engine!r} fits by Laplace only (nagq=1)")
    return family, link


def _method(engine, lmm, reml, nagq, options) -> str:
    if engine == "mgcv":
        return options.get("method", "REML")
    if lmm:
        return "REML" if reml else "ML"
    return "Laplace" if nagq == 1 else "Laplace(nAGQ=0)" if nagq == 0 else "AGQ"


def _prepare(engine, formula, family, link, nagq, reml, options):
    family, link = _check(engine, family, link, nagq, options)
    # a Gaussian dispformula model is fitted by maximum likelihood, as natively
    lmm = family == "gaussian" and link == "identity" and "dispformula" not in options
    options = dict(options)
    if engine == "mgcv" and reml is not None and lmm:
        method = options.setdefault("method", "REML" if reml else "ML")
        if (method == "REML") != bool(reml):
            raise ValueError(f"reml={reml} contradicts method={method!r}")
    reml = (True if reml is None else bool(reml)) if lmm else None
    if engine == "mgcv":
        reml = (options.get("method", "REML") == "REML") if lmm else None
    model = {
        "formula": formula,
        "family": family,
        "link": link,
        "method": _method(engine, lmm, reml, nagq, options),
        "nagq": int(nagq),
        "reml": reml,
    }
    r_formula, ctx = formula, {}
    if engine == "mgcv":
        r_formula, re_labels, groups = nm.translate_mgcv(formula)
        options["re_groups"] = {label: vars_ for label, (_, vars_) in groups.items()}
        ctx = {"re_labels": re_labels, "groups": groups}
    elif engine == "gamm4":
        r_formula, options["random"] = nm.translate_gamm4(formula)
    job = {
        "engine": engine,
        "formula": r_formula,
        "family": family,
        "link": link,
        "nagq": int(nagq),
        "reml": bool(reml),
        "options": options,
    }
    return job, model, ctx


def fit_reference(
    engine: str,
    formula: str,
    data: pd.DataFrame,
    family: str = "gaussian",
    link: str | None = None,
    nagq: int = 1,
    reml: bool | None = None,
    timeout: float | None = None,
    **options,
) -> dict:
    """Fit ``formula`` with an R reference package and return a FitRecord.

    Parameters
    ----------
    engine : {"lme4", "glmmTMB", "ordinal", "mgcv", "gamm4"}
    formula : str
        lme4 syntax. For mgcv, random terms become ``bs = "re"`` smooths
        (`names.translate_mgcv`); for gamm4 they become ``random =``.
    data : pandas.DataFrame
        Sent to R column by column (see `convert`).
    family, link : str
        glmmbench family name and R link name (default: R's canonical link;
        log for the negative binomials). ``"negative_binomial"`` (alias
        ``"nbinom2"``; glmer.nb / glmmTMB ``nbinom2``), ``"nbinom1"`` (glmmTMB
        only), ``"Gamma"`` (glmer / glmmTMB ``Gamma``; links inverse, identity,
        log); glmmTMB only: ``"beta"`` (``beta_family``), ``"truncated_poisson"``,
        ``"truncated_nbinom2"``, ``"truncated_nbinom1"``, ``"genpois"``. The record's
        ``model.family`` is the canonical name.
    nagq : int
        1 = Laplace; > 1 adaptive Gauss-Hermite (lme4 glmer, ordinal clmm).
    reml : bool, optional
        Gaussian identity-link models only; default True.
    timeout : float, optional
        Seconds for the whole request; on overrun the worker is killed and
        replaced and `RTimeout` is raised.
    **options
        ``threshold`` (ordinal), ``method`` (mgcv, default "REML"),
        ``dispformula`` (glmmTMB: a one-sided formula string of the dispersion model;
        the record then has ``fixef_disp`` and ``se_disp``, glmmTMB's
        ``fixef(m)$disp`` and its standard errors), ``r_sleep`` (seconds R sleeps
        first; for testing timeouts).

    Returns
    -------
    dict
        FitRecord: plain Python types, JSON-serializable (see CONVENTIONS.md).

    Raises
    ------
    RError
        R signalled an error; the message is R's ``conditionMessage``.
    RTimeout, RWorkerDied
        The worker overran ``timeout`` or died; it has been replaced.
    ValueError, TypeError
        Bad arguments or data, found before anything reaches R.
    """
    if engine == "lme4" and family == "multinomial":
        return _multinomial_by_glmer(formula, data, link, nagq, timeout, options)
    job, model, ctx = _prepare(engine, formula, family, link, nagq, reml, options)
    raw = request(("fit", job, data), timeout)
    return _record(raw, engine, model, ctx)


_GLMER_RESPONSE = "second_category_glmmbench"


def _multinomial_by_glmer(formula, data, link, nagq, timeout, options) -> dict:
    """lme4 for a multinomial response with two categories: glmer's logistic model
    of the second category against the first (the baseline), named as glmmbench names
    the multinomial model (``b~x``, ``b~(Intercept)`` in varcorr)."""
    if link not in (None, "logit"):
        raise ValueError(f"link {link!r} is not available for family 'multinomial' "
                         "(baseline-category logits)")
    lhs, rhs = formula.split("~", 1)
    name = lhs.strip()
    if name not in data.columns:
        raise ValueError(f"response column {name!r} is not in the data")
    y = data[name]
    levels = list(y.cat.categories if isinstance(y.dtype, pd.CategoricalDtype)
                  else sorted(y.dropna().unique()))
    if len(levels) != 2:
        raise ValueError(f"lme4 fits a multinomial response with two categories only (as "
                         f"glmer's binomial model); {name!r} has {len(levels)}: use engine "
                         "'mgcv'")
    second = (y == levels[1]).astype(float).where(y.notna())
    rec = fit_reference("lme4", f"{_GLMER_RESPONSE} ~{rhs}",
                        data.assign(**{_GLMER_RESPONSE: second}), family="binomial",
                        nagq=nagq, timeout=timeout, **options)
    prefix = f"{levels[1]}~"

    def named(v):
        return None if v is None else prefix + v

    rec["fixef"] = {prefix + k: v for k, v in rec["fixef"].items()}
    rec["se"] = {prefix + k: v for k, v in rec["se"].items()}
    rec["varcorr"] = [{**row, "var1": named(row.get("var1")), "var2": named(row.get("var2"))}
                      for row in rec["varcorr"]]
    rec["model"] = {**rec["model"], "formula": formula, "family": "multinomial",
                    "link": "logit"}
    return rec


def describe_in_r(data: pd.DataFrame, timeout: float | None = None) -> dict[str, dict]:
    """R's view of each column of ``data`` after transfer.

    Returns ``{column: {"class": [...], "typeof": str, "levels": [...],
    "ordered": bool, "n_na": int, "length": int, "head": [...]}}``, as R's
    ``class()``, ``typeof()``, ``levels()``, ``is.ordered()``, ``sum(is.na())``
    and ``as.character(head(x, 6))`` (NA as None) see it.
    """
    raw = request(("describe", data), timeout) or {}
    out = {}
    for col, d in raw.items():
        out[col] = {
            "class": _as_list(d["class"]),
            "typeof": d["typeof"],
            "levels": [str(v) for v in _as_list(d["levels"])],
            "ordered": bool(d["ordered"]),
            "n_na": int(d["n_na"]),
            "length": int(d["length"]),
            "head": _as_list(d["head"]),
        }
    return out


# ------------------------------------------------------------------ R -> record


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list) else [x]


def _as_dict(x) -> dict:
    return dict(x) if isinstance(x, dict) else {}


def _varcorr_rows(vc: dict) -> list[dict]:
    cols = {k: _as_list(vc.get(k)) for k in ("grp", "var1", "var2", "vcov", "sdcor")}
    return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def _mgcv_varcorr(rows, ctx, multinomial, levels):
    key = "varcorr_multinomial" if multinomial else "varcorr"
    rules = nm.NAME_TABLES["mgcv"][key]
    out = []
    for row in rows:
        grp, var1 = nm.apply_rule(rules, row["grp"], {**ctx, "levels": levels})
        out.append({**row, "grp": grp, "var1": var1})
    # lme4 order: the random-effect rows first, the Residual row last.
    return sorted(out, key=lambda r: r["grp"] == "Residual")


def _smooth(s: dict) -> dict:
    lam = [float(v) for v in _as_list(s.get("lambda"))]
    return {
        "term": s["term"],
        "var": s.get("var"),
        "edf": s["edf"],
        "k": s["k"],
        "bs": nm.MGCV_SMOOTH_CLASSES.get(s["class"], s["class"]),
        "lambda": lam[0] if len(lam) == 1 else (lam or None),
        "grid": _as_list(s.get("grid")),
        "fit": _as_list(s.get("fit")),
    }


def _record(raw: dict, engine: str, model: dict, ctx: dict) -> dict:
    fixef, se = _as_dict(raw["fixef"]), _as_dict(raw["se"])
    varcorr = _varcorr_rows(raw["varcorr"])
    ngroups = _as_dict(raw["ngroups"])
    aux = _as_dict(raw.get("aux"))
    if engine == "mgcv":
        multinomial = model["family"] == "multinomial"
        levels = _as_list(aux.get("levels"))
        if multinomial:
            fixef = dict(zip(nm.multinom_names(list(fixef), levels), fixef.values(), strict=True))
            se = dict(zip(nm.multinom_names(list(se), levels), se.values(), strict=True))
        varcorr = _mgcv_varcorr(varcorr, ctx, multinomial, levels)
        ngroups = {ctx["groups"][label][0]: n for label, n in _as_dict(aux.get("ngroups")).items()}
    return {
        "engine": engine,
        "engine_version": raw["engine_version"],
        "r_version": raw["r_version"],
        "model": model,
        "nobs": int(raw["nobs"]),
        "ngroups": {k: int(v) for k, v in ngroups.items()},
        "fixef": fixef,
        "se": se,
        "thresholds": _as_dict(raw["thresholds"]),
        "varcorr": varcorr,
        "theta": [float(v) for v in _as_list(raw["theta"])],
        "sigma": raw["sigma"],
        "loglik": raw["loglik"],
        "deviance": raw["deviance"],
        "aic": raw["aic"],
        "bic": raw["bic"],
        "df": raw["df"],
        "converged": bool(raw["converged"]),
        "messages": [str(m) for m in _as_list(raw["messages"])],
        "time_s": raw["time_s"],
        "smooths": [_smooth(s) for s in _as_list(raw["smooths"])],
        # glmmTMB with a dispformula: fixef(m)$disp and its standard errors
        "fixef_disp": _as_dict(aux.get("fixef_disp")),
        "se_disp": _as_dict(aux.get("se_disp")),
        # glmmTMB's family_params(): a t's df, Tweedie's power ({} for the others)
        "family_params": _as_dict(aux.get("family_params")),
    }
