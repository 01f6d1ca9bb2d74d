"""Speed benchmark: native fit vs the R engines on the same data, in one run.

    glmmbench bench [--repeat 3] [--match TEXT] [--wide] [--small] [--big] [--huge]
                    [--peers]

For each model the native ``fit()`` is timed in this process (formula and
DataFrame to result) and each of its R engines (glmer unless a model names
others) inside R (``system.time`` around the call) in a reference_r worker,
alternating, ``repeat`` times; the best time of each is kept. Prints each time,
the ratio native / fastest R engine, their geometric mean, and the
log-likelihood difference to the fastest engine at the two optima (for AGQ on
lme4's scale, which leaves out the saturated log-likelihood:
``known_discrepancies`` ``lme4-agq-*``; mgcv's logLik is conditional:
``mgcv-loglik-is-conditional``). Models no R engine fits (vector AGQ) are timed
natively only. ``--wide`` times the speed table (``WIDE_MODELS``: each model
against lme4 and glmmTMB); ``--small`` the small real data sets (``SMALL_MODELS``),
where a fit's fixed costs dominate; ``--peers`` the Python peers (``PEERS``, in an
environment of their own) on issue 25's models, peer time / native time. ``--big``
instead times (and reports the peak memory of) a native random-intercept binomial
model with n = 1,000,000, ``--huge`` the scale models (``HUGE_MODELS``), each in a
fresh process.
This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BENCH_MODELS", "WIDE_MODELS", "SMALL_MODELS", "run_benchmark"]


@dataclass(frozen=True)
class BenchModel:
    name: str
    formula: str
    family: str
    make_data: Callable[[np.random.Generator], pd.DataFrame]
    nagq: int = 1
    r_engines: tuple[str, ...] = ("lme4",)  # empty: no R engine fits the model
    reml: bool | None = None
    dispformula: str | None = None


def _dataset(name: str) -> Callable[[np.random.Generator], pd.DataFrame]:
    """A shipped dataset as a data maker (the generator is not used)."""
    def load(rng: np.random.Generator) -> pd.DataFrame:
        from glmmbench import datasets

        return datasets.load(name)

    return load


verbagg = _dataset("VerbAgg")
instevaldata = _dataset("InstEval")
sleepstudy = _dataset("sleepstudy")
cbpp = _dataset("cbpp")
wine = _dataset("wine")
soup = _dataset("soup")
grouseticks = _dataset("grouseticks")


def _factor(codes: np.ndarray, prefix: str, nlev: int) -> pd.Categorical:
    width = len(str(nlev))
    labels = [f"{prefix}{i + 1:0{width}d}" for i in range(nlev)]
    return pd.Categorical.from_codes(codes, categories=labels)




def binomial_slopes(rng: np.random.Generator, n: int = 30_000, ngroups: int = 600
                    ) -> pd.DataFrame:
    """Binary response, random intercept and slope (sd 0.8, 0.4, correlation 0.3)."""
    g = rng.integers(0, ngroups, n)
    x = rng.standard_normal(n)
    cov = np.array([[0.64, 0.3 * 0.8 * 0.4], [0.3 * 0.8 * 0.4, 0.16]])
    b = rng.multivariate_normal([0, 0], cov, ngroups)
    eta = -0.5 + 0.7 * x + b[g, 0] + b[g, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": _factor(g, "g", ngroups)})


def _crossed_counts(rng: np.random.Generator, draw, n: int, na: int, nb: int
                    ) -> pd.DataFrame:
    """Counts ``draw(rng, mu)`` with log mean ``0.3 + 0.4 x`` and crossed random
    intercepts (sd 0.5 and 0.3)."""
    a = rng.integers(0, na, n)
    bb = rng.integers(0, nb, n)
    x = rng.standard_normal(n)
    eta = 0.3 + 0.4 * x + 0.5 * rng.standard_normal(na)[a] + 0.3 * rng.standard_normal(nb)[bb]
    y = draw(rng, np.exp(eta))
    return pd.DataFrame({"y": y.astype(float), "x": x, "a": _factor(a, "a", na),
                         "b": _factor(bb, "b", nb)})


def poisson_crossed(rng: np.random.Generator, n: int = 20_000, na: int = 500, nb: int = 100
                    ) -> pd.DataFrame:
    return _crossed_counts(rng, lambda r, mu: r.poisson(mu), n, na, nb)


def negbin_crossed(rng: np.random.Generator, n: int = 20_000, na: int = 500, nb: int = 100
                   ) -> pd.DataFrame:
    """NB2 counts with size 2."""
    return _crossed_counts(rng, lambda r, mu: r.negative_binomial(2.0, 2.0 / (2.0 + mu)),
                           n, na, nb)


def ordinal_intercept(rng: np.random.Generator, n: int = 20_000, ngroups: int = 400
                      ) -> pd.DataFrame:
    """Five ordered categories, cumulative logit, random intercept (sd 0.8)."""
    g = rng.integers(0, ngroups, n)
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    latent = 0.5 * x - 0.3 * z + 0.8 * rng.standard_normal(ngroups)[g] + rng.logistic(size=n)
    y = np.searchsorted([-1.0, 0.0, 1.0, 2.0], latent)
    return pd.DataFrame({"y": pd.Categorical.from_codes(y, list("abcde"), ordered=True),
                         "x": x, "z": z, "g": _factor(g, "g", ngroups)})


def binomial_intercept(rng: np.random.Generator, n: int = 50_000, ngroups: int = 1000,
                       sd: float = 0.8) -> pd.DataFrame:
    """Binary response, random intercept with standard deviation ``sd``."""
    g = rng.integers(0, ngroups, n)
    x = rng.standard_normal(n)
    eta = -0.3 + 0.5 * x + sd * rng.standard_normal(ngroups)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": _factor(g, "g", ngroups)})


def binomial_slopes_small(rng: np.random.Generator) -> pd.DataFrame:
    return binomial_slopes(rng, n=20_000, ngroups=500)


def binomial_big(rng: np.random.Generator) -> pd.DataFrame:
    return binomial_intercept(rng, n=1_000_000, ngroups=10_000, sd=0.7)


# issue 25's scale goals (``--huge``): n = 1e7 with 1e5 groups; crossed 1e4 x 1e3 levels
def binomial_huge(rng: np.random.Generator) -> pd.DataFrame:
    return binomial_intercept(rng, n=10_000_000, ngroups=100_000, sd=0.7)


def poisson_crossed_huge(rng: np.random.Generator) -> pd.DataFrame:
    return poisson_crossed(rng, n=1_000_000, na=10_000, nb=1_000)




def gamsim6(rng: np.random.Generator, n: int = 10_000, ngroups: int = 40) -> pd.DataFrame:
    """mgcv's ``gamSim(6)``: Gu and Wahba's four-term additive truth on ``x0..x3 ~ U(0, 1)``
    plus a random intercept over ``ngroups`` groups (sd 2 here), noise sd 2."""
    x = rng.uniform(size=(n, 4))
    f0 = 2 * np.sin(np.pi * x[:, 0])
    f1 = np.exp(2 * x[:, 1])
    f2 = (0.2 * x[:, 2]**11 * (10 * (1 - x[:, 2]))**6
          + 10 * (10 * x[:, 2])**3 * (1 - x[:, 2])**10)
    g = rng.integers(0, ngroups, n)
    y = f0 + f1 + f2 + 2 * rng.standard_normal(ngroups)[g] + 2 * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "x3": x[:, 3],
                         "fac": _factor(g, "f", ngroups)})


_GAMSIM6 = ('y ~ s(x0, bs = "cr") + s(x1, bs = "cr") + s(x2, bs = "cr") + s(x3, bs = "cr") '
            '+ (1 | fac)')

BENCH_MODELS = (
    BenchModel("VerbAgg crossed",
               "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial",
               verbagg),
    BenchModel("binomial slopes n=30000, 600 groups", "y ~ x + (1 + x | g)", "binomial",
               binomial_slopes),
    BenchModel("Poisson crossed n=20000, 500 x 100", "y ~ x + (1 | a) + (1 | b)", "poisson",
               poisson_crossed),
    BenchModel("NB2 crossed n=20000, 500 x 100", "y ~ x + (1 | a) + (1 | b)",
               "negative_binomial", negbin_crossed, r_engines=("glmmTMB",)),
    BenchModel("ordinal VerbAgg resp, crossed id x item",
               "resp ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "ordinal",
               verbagg, r_engines=("ordinal",)),  # resp: no < perhaps < yes
    BenchModel("ordinal n=20000, 400 groups", "y ~ x + z + (1 | g)", "ordinal",
               ordinal_intercept, r_engines=("ordinal",)),
    BenchModel("multinomial VerbAgg resp, (1 | id)",
               "resp ~ Anger + Gender + btype + situ + (1 | id)", "multinomial", verbagg,
               r_engines=("mgcv",)),
    BenchModel("binomial (1|g) n=50000, 1000 groups, nAGQ=25", "y ~ x + (1 | g)", "binomial",
               binomial_intercept, nagq=25),
    BenchModel("GAMM gamSim(6) n=10000, 40 groups, REML", _GAMSIM6, "gaussian",
               gamsim6, r_engines=("mgcv", "gamm4")),
    BenchModel("binomial (1+x|g) n=20000, 500 groups, vector AGQ nagq=7",
               "y ~ x + (1 + x | g)", "binomial", binomial_slopes_small, nagq=7, r_engines=()),
)


def _scenario(name: str, n_groups: int = 500, group_size: int = 20
              ) -> Callable[[np.random.Generator], pd.DataFrame]:
    """A simulate scenario drawn at ``n_groups`` x ``group_size`` (n = 1e4 by default)."""
    def make(rng: np.random.Generator) -> pd.DataFrame:
        import dataclasses

        import simulate

        s = dataclasses.replace(simulate.SCENARIOS[name], n_groups=n_groups,
                                group_size=group_size)
        return simulate.generate(s, rng).data

    return make


def _family_model(scenario: str, dispformula: str | None = None, n_groups: int = 500
                  ) -> BenchModel:
    import simulate

    s = simulate.SCENARIOS[scenario]
    label = s.family + (f", dispformula {dispformula}" if dispformula else "")
    return BenchModel(f"families: {label} (1 | g) n={20 * n_groups:.0e}".replace("e+0", "e"),
                      simulate.formula(s), s.family, _scenario(scenario, n_groups=n_groups),
                      r_engines=("glmmTMB",), dispformula=dispformula)


# issue 26: one model per glmmTMB family at n = 1e4 (COM-Poisson 2e3) with a random
# intercept, against
# glmmTMB (``bench --match families``)
FAMILY_MODELS = (
    _family_model("beta_intercept"),
    _family_model("ordbeta_intercept"),
    _family_model("betabinomial_intercept"),
    _family_model("truncated_poisson_intercept"),
    _family_model("truncated_nbinom2_intercept"),
    _family_model("truncated_nbinom1_intercept"),
    _family_model("genpois_intercept"),
    # COM-Poisson: glmmTMB takes 20 s at n = 500 (its normalising constant by series
    # for every observation and evaluation), so n = 2000 here
    _family_model("compois_intercept", n_groups=100),
    _family_model("t_intercept"),
    _family_model("tweedie_intercept"),
    _family_model("negbin_dispformula", "~ x"),
)
BENCH_MODELS = BENCH_MODELS + FAMILY_MODELS


# The table of issue 13: each model against lme4 and glmmTMB, native / fastest.
WIDE_MODELS = (
    BenchModel("VerbAgg crossed",
               "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial",
               verbagg, r_engines=("lme4", "glmmTMB")),
    BenchModel("binomial (1 + x | g) n=1e5, 2000 groups", "y ~ x + (1 + x | g)", "binomial",
               lambda rng: binomial_slopes(rng, n=100_000, ngroups=2000),
               r_engines=("lme4", "glmmTMB")),
    BenchModel("binomial (1 | g) n=2e5, 4000 groups", "y ~ x + (1 | g)", "binomial",
               lambda rng: binomial_intercept(rng, n=200_000, ngroups=4000),
               r_engines=("lme4", "glmmTMB")),
    BenchModel("Poisson crossed n=2e4, 500 x 100", "y ~ x + (1 | a) + (1 | b)", "poisson",
               poisson_crossed, r_engines=("lme4", "glmmTMB")),
    BenchModel("InstEval LMM, ML", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
               "gaussian", instevaldata, r_engines=("lme4",), reml=False),
    BenchModel("sleepstudy (Days | Subject), ML", "Reaction ~ Days + (Days | Subject)",
               "gaussian", sleepstudy, r_engines=("lme4", "glmmTMB"), reml=False),
)


# Small real data sets (issue 25's second table), where fixed costs dominate: each
# against the R engine users fit it with. Run with --repeat 5 (best of 5 each side).
_CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
SMALL_MODELS = (
    BenchModel("cbpp Laplace", _CBPP, "binomial", cbpp, r_engines=("lme4", "glmmTMB")),
    BenchModel("cbpp nAGQ=9", _CBPP, "binomial", cbpp, nagq=9),
    BenchModel("sleepstudy (Days | Subject), REML", "Reaction ~ Days + (Days | Subject)",
               "gaussian", sleepstudy, r_engines=("lme4", "glmmTMB")),
    BenchModel("grouseticks NB2 (1 | LOCATION)", "TICKS ~ YEAR + (1 | LOCATION)",
               "negative_binomial", grouseticks, r_engines=("lme4", "glmmTMB")),
    BenchModel("grouseticks Poisson crossed",
               "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson",
               grouseticks, r_engines=("lme4", "glmmTMB")),
    BenchModel("wine ordinal (1 | judge)", "rating ~ temp + contact + (1 | judge)",
               "ordinal", wine, r_engines=("ordinal",)),
    BenchModel("soup ordinal crossed", "SURENESS ~ PROD + (1 | RESP) + (1 | PRODID)",
               "ordinal", soup, r_engines=("ordinal",)),
)


def _time_native(model: BenchModel, data: pd.DataFrame):
    from glmmbench.fit import fit

    t0 = time.perf_counter()
    res = fit(model.formula, data, family=model.family, nagq=model.nagq, reml=model.reml,
              dispformula=model.dispformula)
    return time.perf_counter() - t0, res


def _loglik_on_r_scale(res, model: BenchModel, engine: str) -> float:
    """lme4's logLik at nAGQ > 1 omits the saturated log-likelihood (known_discrepancies)."""
    if model.nagq == 1 or engine != "lme4" or res.loglik_saturated is None:
        return res.loglik
    return res.loglik - res.loglik_saturated


def run_big(seed: int = 20261125) -> dict:
    """Native fit of a random-intercept binomial model with n = 1e6: time and peak RSS.

    Run it in a fresh process so that the peak resident memory is this fit's.
    """
    data = binomial_big(np.random.default_rng(seed))
    model = BenchModel("binomial random intercept n=1e6, 10000 groups", "y ~ x + (1 | g)",
                       "binomial", binomial_big)
    t, res = _time_native(model, data)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model.name, "native_s": t, "peak_rss_mb": peak_mb,
            "loglik": res.loglik, "converged": res.converged}


# --------------------------------------------------------------- Python peers

# The Python packages a user would pick instead, pinned, installed into their own
# environment (never a dependency of the engine): PEERS_VENV, made on first use.
PEERS = {"glmm": "glmm==0.6.2", "mixedlm": "mixedlm==1.3.0",
         "statsmodels": "statsmodels==0.14.6", "interlace-lme": "interlace-lme==0.3.2"}
PEER_TIMEOUT_S = 300.0  # a peer's repeats of one model, in all
PEERS_VENV = Path(os.environ.get("GLMMBENCH_PEERS_VENV",
                                 Path(__file__).resolve().parents[2] / ".peers"))
# issue 25's peer table: (model, cbpp's response as the peers take it: glmm's cbind()
# of two columns, mixedlm's proportion with weights)
_CBPP_PROP = ("prop ~ period + (1 | herd)", "size")
_CBPP_CBIND = "cbind(incidence, failures) ~ period + (1 | herd)"


def _peer_models() -> tuple[tuple[BenchModel, tuple[str, str] | None], ...]:
    by_name = {m.name: m for m in (*WIDE_MODELS, *SMALL_MODELS)}
    return (
        (by_name["sleepstudy (Days | Subject), ML"], None),
        (by_name["InstEval LMM, ML"], None),
        (by_name["VerbAgg crossed"], None),
        (by_name["binomial (1 + x | g) n=1e5, 2000 groups"], None),
        (by_name["binomial (1 | g) n=2e5, 4000 groups"], None),
        (by_name["Poisson crossed n=2e4, 500 x 100"], None),
        (by_name["cbpp Laplace"], _CBPP_PROP),
        (by_name["cbpp nAGQ=9"], _CBPP_PROP),
        (by_name["grouseticks NB2 (1 | LOCATION)"], None),
    )


def peers_python() -> Path:
    """The peers' interpreter: ``PEERS_VENV`` made and filled with ``PEERS`` (and
    pandas, to read the data) on first use."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "pandas", *PEERS.values()],
                   check=True)
    return python


def run_peers(repeat: int = 3, seed: int = 20261125, match: str | None = None) -> dict:
    """Each peer model fitted natively and by each peer (best of ``repeat`` each, the
    peers in their own process: ``peer_fits.py``); ratios are peer time / native
    time, log-likelihood differences peer - native."""
    python = peers_python()
    versions = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
         f"{{p: m.version(p) for p in {list(PEERS)!r}}}))"],
        check=True, capture_output=True, text=True).stdout
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, prop in _peer_models():
            if match is not None and match not in model.name:
                continue
            data = model.make_data(np.random.default_rng(seed))
            if prop is not None:
                data = data.assign(prop=data["incidence"] / data["size"],
                                   failures=data["size"] - data["incidence"])
            t_nat, res = min((_time_native(model, data) for _ in range(repeat)),
                             key=lambda tr: tr[0])
            response = model.formula.split("~")[0].strip()
            if response in data.columns and isinstance(data[response].dtype,
                                                       pd.CategoricalDtype):
                # a two-level factor response as 0/1 (glmm takes numbers only)
                data = data.assign(**{response: data[response].cat.codes.astype(float)})
            csv = Path(tmp) / "data.csv"
            data.to_csv(csv, index=False)
            spec = {"csv": str(csv), "family": model.family,
                    "formula": _CBPP_CBIND if prop is not None else model.formula,
                    "link": None, "nagq": model.nagq,
                    "reml": True if model.reml is None else model.reml,
                    "factors": [c for c in data.columns
                                if isinstance(data[c].dtype, pd.CategoricalDtype)
                                or data[c].dtype == object],
                    "prop_formula": prop[0] if prop else None,
                    "weights": prop[1] if prop else None,
                    "peers": list(PEERS), "repeat": repeat}
            out = {}
            for peer in PEERS:  # each in its own process, with a time limit
                spec_path = Path(tmp) / "spec.json"
                spec_path.write_text(json.dumps({**spec, "peers": [peer]}))
                peer_script = Path(__file__).with_name("peer_fits.py")
                try:
                    done = subprocess.run([str(python), str(peer_script), str(spec_path)],
                                          check=True, capture_output=True, text=True,
                                          timeout=PEER_TIMEOUT_S)
                    out.update(json.loads(done.stdout.strip().splitlines()[-1]))
                except subprocess.TimeoutExpired:
                    out[peer] = {"error": f"timeout {PEER_TIMEOUT_S:.0f} s"}
            rows.append({"model": model.name, "native_s": t_nat, "loglik": res.loglik,
                         "peers": {p: {**r, "ratio": r["time_s"] / t_nat,
                                       "loglik_diff": r["loglik"] - res.loglik}
                                   if "error" not in r else r for p, r in out.items()}})
    return {"peers": rows, "versions": json.loads(versions)}


def format_peers(out: dict) -> str:
    names = list(out["versions"])
    head = (f"{'model':42s} {'native s':>9s} "
            + " ".join(f"{p + ' s':>11s} {p + '/native':>15s} {'dloglik':>9s}" for p in names))
    lines = [head]
    for r in out["peers"]:
        cells = []
        for p in names:
            v = r["peers"].get(p, {})
            missing = "n/a" if v.get("error", "").startswith("NotFitted") else "error"
            cells.append(f"{v['time_s']:11.3f} {v['ratio']:15.2f} {v['loglik_diff']:9.1e}"
                         if "time_s" in v else f"{missing:>11s} {'-':>15s} {'-':>9s}")
        lines.append(f"{r['model'][:42]:42s} {r['native_s']:9.3f} " + " ".join(cells))
    lines.append("peer versions: " + ", ".join(f"{p} {v}" for p, v in out["versions"].items()))
    lines.append("ratio = peer time / native time (above 1: glmmbench is faster); dloglik = "
                 "peer - native (above 0: the peer found a higher likelihood)")
    errors = [f"{r['model']}: {p}: {v['error']}" for r in out["peers"]
              for p, v in r["peers"].items()
              if "error" in v and not v["error"].startswith("NotFitted")]
    not_fitted = sorted({v["error"] for r in out["peers"] for v in r["peers"].values()
                         if v.get("error", "").startswith("NotFitted")})
    return "\n".join(lines + ["n/a: " + m.split(": ", 1)[1] for m in not_fitted] + errors)


HUGE_MODELS = (
    BenchModel("binomial (1 | g) n=1e7, 1e5 groups", "y ~ x + (1 | g)", "binomial",
               binomial_huge),
    BenchModel("Poisson crossed n=1e6, 1e4 x 1e3", "y ~ x + (1 | a) + (1 | b)", "poisson",
               poisson_crossed_huge),
)


def run_huge(name: str, seed: int = 20261125) -> dict:
    """One ``HUGE_MODELS`` fit natively (by name): time, peak RSS, log-likelihood. Run
    each in a fresh process (``bench --huge``), so that the peak is that fit's."""
    model = next(m for m in HUGE_MODELS if m.name == name)
    t0 = time.perf_counter()
    data = model.make_data(np.random.default_rng(seed))
    t_data = time.perf_counter() - t0
    t, res = _time_native(model, data)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model.name, "native_s": t, "data_s": t_data, "peak_rss_mb": peak_mb,
            "loglik": res.loglik, "converged": res.converged}


def run_benchmark(repeat: int = 3, seed: int = 20261125,
                  models: tuple[BenchModel, ...] | None = None) -> dict:
    """Time every model natively and with each of its R engines, alternating, keeping
    the best of ``repeat`` runs of each; ratios are native / fastest R engine."""
    from reference_r import fit_reference

    rows = []
    for model in BENCH_MODELS if models is None else models:
        data = model.make_data(np.random.default_rng(seed))
        t_nat: list[float] = []
        t_r: dict[str, list[float]] = {e: [] for e in model.r_engines}
        recs: dict[str, dict] = {}
        res = None
        for _ in range(repeat):
            t, res = _time_native(model, data)
            t_nat.append(t)
            for engine in model.r_engines:
                extra = {} if model.dispformula is None else {"dispformula": model.dispformula}
                recs[engine] = fit_reference(engine, model.formula, data, family=model.family,
                                             nagq=model.nagq, reml=model.reml, timeout=900,
                                             **extra)
                t_r[engine].append(recs[engine]["time_s"])
        r_s = {e: min(v) for e, v in t_r.items()}
        row = {"model": model.name, "n": len(data), "native_s": min(t_nat), "r_s": r_s,
               "fastest": None, "ratio": None, "loglik_native": res.loglik,
               "loglik_diff": {}, "native_converged": res.converged,
               "r_messages": {e: rec["messages"] for e, rec in recs.items()}}
        for engine, rec in recs.items():
            row["loglik_diff"][engine] = _loglik_on_r_scale(res, model, engine) - rec["loglik"]
        if r_s:
            fastest = min(r_s, key=r_s.get)
            row.update(fastest=fastest, ratio=min(t_nat) / r_s[fastest])
        rows.append(row)
    ratios = np.array([r["ratio"] for r in rows if r["ratio"] is not None])
    return {"models": rows, "geomean_ratio": float(np.exp(np.mean(np.log(ratios))))}


def format_benchmark(out: dict) -> str:
    if "big" in out:
        b = out["big"]
        return (f"{b['model']}: {b['native_s']:.2f} s, peak RSS {b['peak_rss_mb']:.0f} MB, "
                f"loglik {b['loglik']:.4f}, converged {b['converged']}")
    engines = sorted({e for r in out["models"] for e in r["r_s"]})
    head = f"{'model':52s} {'native s':>9s} " + " ".join(f"{e + ' s':>11s}" for e in engines)
    lines = [head + f" {'native/fastest':>15s} {'dloglik(fastest)':>17s}"]
    for r in out["models"]:
        cells = " ".join(f"{r['r_s'][e]:11.3f}" if e in r["r_s"] else f"{'-':>11s}"
                         for e in engines)
        ratio = f"{r['ratio']:15.3f}" if r["ratio"] is not None else f"{'-':>15s}"
        dll = (f"{r['loglik_diff'][r['fastest']]:17.2e}" if r["fastest"] is not None
               else f"{'-':>17s}")
        lines.append(f"{r['model'][:52]:52s} {r['native_s']:9.3f} {cells} {ratio} {dll}")
    lines.append(f"geometric mean of native / fastest R engine: {out['geomean_ratio']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--big", action="store_true",
                        help="only the n = 1e6 native fit (time and peak memory)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--match", help="only the models whose name contains this text")
    parser.add_argument("--wide", action="store_true",
                        help="the speed table: each model against lme4 and glmmTMB, "
                             "native / fastest (InstEval, sleepstudy, large binomials)")
    parser.add_argument("--small", action="store_true",
                        help="small real data sets, where fixed costs dominate (cbpp, "
                             "sleepstudy, grouseticks, wine, soup); use --repeat 5")
    parser.add_argument("--peers", action="store_true",
                        help="the Python peers (PEERS: glmm, mixedlm, statsmodels, "
                             "interlace-lme) on issue 25's models, in their own "
                             "environment (.peers/, made on first use)")
    parser.add_argument("--huge", action="store_true",
                        help="issue 25's scale models (n = 1e7 binomial, n = 1e6 Poisson "
                             "crossed 1e4 x 1e3), each in a fresh process: time, peak RSS")
    parser.add_argument("--huge-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.huge_one:
        print(json.dumps(run_huge(args.huge_one, args.seed)))
    elif args.huge:
        for model in HUGE_MODELS:
            done = subprocess.run([sys.executable, "-m", "glmmbench.harness.bench",
                                   "--huge-one", model.name, "--seed", str(args.seed)],
                                  check=True, capture_output=True, text=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{r['model']}: {r['native_s']:.1f} s (data {r['data_s']:.1f} s), peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB, loglik {r['loglik']:.4f}, converged "
                  f"{r['converged']}")
    elif args.peers:
        out = run_peers(args.repeat, args.seed, args.match)
        print(format_peers(out))
    else:
        pool = WIDE_MODELS if args.wide else SMALL_MODELS if args.small else BENCH_MODELS
        models = tuple(m for m in pool if args.match is None or args.match in m.name)
        out = ({"big": run_big(args.seed)} if args.big
               else run_benchmark(args.repeat, args.seed, models))
        print(format_benchmark(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
