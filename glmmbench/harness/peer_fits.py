"""Fit one model with the Python peers, in the peers' own environment.

    python peer_fits.py SPEC.json

Run by ``glmmbench bench --peers`` with the interpreter of a separate virtual
environment that holds the peers (``bench.PEERS``); it imports nothing from
glmmbench, so that no peer is ever a dependency of the engine. The spec names a CSV
file of the data, its factor columns, the formula (and, for peers without lme4's
``cbind()``, a proportion formula with its weights column), the family, ``nagq``,
``reml``, the peers and the number of repeats. Prints one JSON object: per peer,
the best wall time of the repeats (the fit call only, the data already in memory),
its log-likelihood, or the error it raised.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd


class NotFitted(Exception):
    """The peer has no fit of this model (shown as n/a, not as a failure)."""


def _glmm(spec: dict, data: pd.DataFrame):
    import glmm

    family = {"negative_binomial": "negativebinomial"}.get(spec["family"], spec["family"])
    kwargs = {"nagq": spec["nagq"]}
    if spec["link"]:
        kwargs["link"] = spec["link"]
    if spec["family"] == "gaussian":
        kwargs["reml"] = bool(spec["reml"])
    fit = glmm.fit(data, spec["formula"], family, **kwargs)
    return float(fit.loglik)


def _mixedlm(spec: dict, data: pd.DataFrame):
    import mixedlm

    formula, weights = spec.get("prop_formula") or spec["formula"], spec.get("weights")
    if spec["family"] == "gaussian":
        res = mixedlm.lmer(formula, data, REML=bool(spec["reml"]))
    elif spec["family"] == "negative_binomial":
        res = mixedlm.glmer_nb(formula, data, nAGQ=spec["nagq"])
    else:
        family = {"binomial": mixedlm.families.Binomial,
                  "poisson": mixedlm.families.Poisson}[spec["family"]]()
        res = mixedlm.glmer(formula, data, family=family, nAGQ=spec["nagq"],
                            weights=weights)
    return float(res.logLik())


def _statsmodels(spec: dict, data: pd.DataFrame):
    """statsmodels' MixedLM: Gaussian models with one random-effects term ``(re | g)``
    only (its ML fit); its GLMMs are variational Bayes, with no likelihood to
    compare."""
    import re

    import statsmodels.formula.api as smf

    terms = re.findall(r"\(([^()|]+)\|\s*([^()|]+)\)", spec["formula"])
    if spec["family"] != "gaussian" or len(terms) != 1:
        raise NotFitted("statsmodels fits Gaussian models with one random-effects "
                                  "term by maximum likelihood; its GLMMs are variational "
                                  "Bayes (no likelihood to compare)")
    fixed = re.sub(r"\+?\s*\([^()]*\|[^()]*\)", "", spec["formula"]).strip().rstrip("+")
    re_formula, group = "~" + terms[0][0].strip(), terms[0][1].strip()
    model = smf.mixedlm(fixed, data, groups=data[group], re_formula=re_formula)
    return float(model.fit(reml=bool(spec["reml"])).llf)


def _interlace(spec: dict, data: pd.DataFrame):
    """interlace-lme: the fixed-effects formula and the lme4 random-effects terms
    apart (its ``random=``); binomial proportions with their weights, as mixedlm."""
    import re

    import interlace

    formula = spec.get("prop_formula") or spec["formula"]
    terms = re.findall(r"\([^()]*\|[^()]*\)", formula)
    fixed = re.sub(r"\+?\s*\([^()]*\|[^()]*\)", "", formula).strip().rstrip("+").strip()
    # lme4's implicit intercept written out: interlace reads (x | g) as a slope alone
    terms = [t if re.match(r"\(\s*[01]\s*[+|]", t) else "(1 + " + t[1:] for t in terms]
    if spec["family"] == "gaussian":
        res = interlace.fit(fixed, data, random=terms,
                            method="REML" if spec["reml"] else "ML")
    else:
        family = {"negative_binomial": "negativebinomial"}.get(spec["family"], spec["family"])
        weights = data[spec["weights"]].to_numpy(float) if spec.get("weights") else None
        res = interlace.glmer(fixed, data, family, random=terms, weights=weights,
                              nAGQ=spec["nagq"])
    return float(res.llf)


PEER_FITS = {"glmm": _glmm, "mixedlm": _mixedlm, "statsmodels": _statsmodels,
             "interlace-lme": _interlace}


def main(path: str) -> int:
    with open(path) as fh:
        spec = json.load(fh)
    data = pd.read_csv(spec["csv"])
    for col in spec["factors"]:
        data[col] = data[col].astype(str).astype("category")
    out = {}
    for peer in spec["peers"]:
        try:
            best, loglik = float("inf"), None
            for _ in range(spec["repeat"]):
                t0 = time.perf_counter()
                loglik = PEER_FITS[peer](spec, data)
                best = min(best, time.perf_counter() - t0)
            out[peer] = {"time_s": best, "loglik": loglik}
        except Exception as exc:  # a peer that cannot fit the model says so
            out[peer] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
