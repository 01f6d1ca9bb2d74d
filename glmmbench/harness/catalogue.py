"""The catalogue: one registry of named problems, and the suites drawn from it.

A `Problem` is a model to fit (formula, family, link, estimator) on data from a
shipped R dataset or a `simulate` scenario, and the R engines that can fit the
same model. Tests, benchmarks and reports all read `PROBLEMS` and `SUITES`.

    >>> from glmmbench.harness.catalogue import SUITES
    >>> [p.name for p in SUITES["smoke"].problems]
    ['smoke_gaussian', 'smoke_poisson', 'smoke_smooth']

The native engine ("glmmbench") is fitted for every problem, whatever it can do
today: a family it does not fit yet gives "not supported" rows, never a gap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import simulate
from glmmbench.errors import FamilyError
from glmmbench.families import ResponseFamily, make_family

__all__ = [
    "DEFINITION_KEYS",
    "MAX_REPLICATES",
    "NATIVE",
    "PROBLEMS",
    "SUITES",
    "Problem",
    "Suite",
    "default_r_engines",
    "definition",
    "definition_hash",
    "get_suite",
    "replicates_of",
]

NATIVE = "glmmbench"
R_ENGINES = ("lme4", "glmmTMB", "ordinal", "mgcv", "gamm4")
# replicates a study may ask for: more is a typo (a million fits of even a tiny
# problem take days)
MAX_REPLICATES = 1_000_000

# What decides a problem's fits: its data (dataset or scenario, and the key its
# replicates are drawn under), its model (formula, family, link), its estimator
# (nagq, reml) and the R engines' options. Not its engines list (adding an engine
# adds that engine's rows), its timeout (a limit on a run, not the model) nor its
# replicate count (more replicates extend the study). A store keeps one definition
# per problem name (glmmbench.harness.store).
DEFINITION_KEYS = ("family", "link", "dataset", "scenario", "formula", "nagq", "reml",
                   "options", "data_key", "dispformula")


def definition(desc: Mapping) -> dict:
    """The definition of a problem from its description (`Problem.describe`, or one a
    store holds, perhaps written by an older version): the `DEFINITION_KEYS`,
    normalized so that equal models compare equal (the canonical link for None, the
    scenario's knobs with their defaults filled in, no options as {}, the name as
    the data key)."""
    out = {k: desc.get(k) for k in DEFINITION_KEYS}
    if out["link"] is None and out["family"] in simulate.FAMILY_LINKS:
        out["link"] = simulate.FAMILY_LINKS[out["family"]][0]
    if out["options"] is None:
        out["options"] = {}
    if out["data_key"] is None:
        out["data_key"] = desc.get("name")
    knobs = out["scenario"]
    if isinstance(knobs, Mapping):
        try:  # an older store's knobs lack those added since: their defaults
            knobs = simulate.Scenario(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in knobs.items()}).knobs()
        except (TypeError, ValueError):
            knobs = dict(knobs)
        out["scenario"] = knobs
    return out


def _canonical(value):
    """Numbers as floats (1 and 1.0 are the same knob), tuples as lists, keys sorted."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        v = float(value)
        return v if math.isfinite(v) else repr(v)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return repr(value)


def definition_hash(desc: Mapping) -> str:
    """A short hash of `definition` (16 hex digits): the store's mark of which
    definition of a problem name its rows were fitted under."""
    text = json.dumps(_canonical(definition(desc)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Problem:
    """One named model on one source of data.

    Parameters
    ----------
    name
        Unique key (the store's ``problem`` column).
    family, link
        glmmbench family and R link name (None: canonical).
    dataset, scenario
        Exactly one: a name for `glmmbench.datasets.load`, or a
        `simulate.Scenario` (replicates are drawn from it).
    formula
        lme4 syntax; None for a scenario means its true model.
    dispformula
        glmmTMB's dispersion model (``"~ x"``); None for a scenario means its true
        one (``simulate.Scenario.disp_slope``), for a dataset none. Only glmmTMB
        fits it among the R engines.
    nagq, reml
        Estimator: 1 = Laplace, > 1 adaptive Gauss-Hermite; REML for
        Gaussian models (None: the engines' default, REML).
    engines
        R engines that fit this model (`reference_r.fit_reference` names).
    options
        Extra keyword arguments per R engine, e.g. ``{"ordinal": {"threshold":
        "flexible"}}``.
    replicates
        Replicates of a simulated problem when a suite does not say otherwise
        (None: the suite's count). A dataset problem has one replicate.
    timeout
        Seconds (> 0, finite) an R fit may take before it is recorded as a timeout.
    data_key
        Replicates are drawn under this key (default: the name), so problems that
        differ only in their estimator (e.g. a series over ``nagq``) fit the same data.
    """

    name: str
    family: str
    link: str | None = None
    dataset: str | None = None
    scenario: simulate.Scenario | None = None
    formula: str | None = None
    nagq: int = 1
    reml: bool | None = None
    engines: tuple[str, ...] = ()
    options: Mapping[str, Mapping] = field(default_factory=dict)
    replicates: int | None = None
    timeout: float = 300.0
    data_key: str | None = None
    dispformula: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.scenario is None):
            raise ValueError(f"problem {self.name!r}: give exactly one of dataset, scenario")
        if self.dataset is not None and self.formula is None:
            raise ValueError(f"problem {self.name!r}: a dataset problem needs a formula")
        unknown = set(self.engines) - set(R_ENGINES)
        if unknown:
            raise ValueError(f"problem {self.name!r}: unknown R engine(s) {sorted(unknown)}")
        if set(self.options) - set(self.engines):
            raise ValueError(f"problem {self.name!r}: options for engines it does not use")
        fam = problem_family(self.family, self.link)
        lmm = fam is not None and fam.lmm
        if lmm and self.nagq != 1:
            raise ValueError(f"problem {self.name!r}: nagq = {self.nagq} on a linear mixed "
                             "model, whose likelihood is exact (nagq applies to GLMMs)")
        if not lmm and self.reml:
            raise ValueError(f"problem {self.name!r}: reml = true on a {self.family} model "
                             "(REML applies to linear mixed models)")
        if self.model_dispformula is not None:
            if set(self.engines) - {"glmmTMB"}:
                raise ValueError(f"problem {self.name!r}: a dispformula model is fitted by "
                                 f"glmmTMB only among the R engines, not {list(self.engines)}")
            if fam is not None and not fam.dispersion_model:
                raise ValueError(f"problem {self.name!r}: dispformula on the {self.family} "
                                 "family, which has no dispersion parameter")
        if not _positive_seconds(self.timeout):
            raise ValueError(f"problem {self.name!r}: timeout must be a positive, finite "
                             f"number of seconds, not {self.timeout!r}")

    @property
    def simulated(self) -> bool:
        return self.scenario is not None

    @property
    def model_dispformula(self) -> str | None:
        """The dispersion model fitted: the problem's, else its scenario's true one."""
        if self.dispformula is not None or self.scenario is None:
            return self.dispformula
        return None if self.scenario.disp_slope is None else "~ x"

    @property
    def all_engines(self) -> tuple[str, ...]:
        """The native engine first, then the R engines."""
        return (NATIVE, *self.engines)

    @property
    def key(self) -> str:
        """The key replicates are drawn under."""
        return self.data_key or self.name

    @property
    def source(self) -> str:
        return f"dataset {self.dataset}" if self.dataset else "simulated"

    def describe(self) -> dict:
        """A JSON-serializable description (stored with the study), with the hash of
        its `definition` (``definition``)."""
        desc = {
            "name": self.name, "family": self.family, "link": self.link,
            "source": self.source, "dataset": self.dataset,
            "scenario": self.scenario.knobs() if self.scenario else None,
            "formula": self.formula, "nagq": self.nagq, "reml": self.reml,
            "engines": list(self.all_engines),
            "options": {k: dict(v) for k, v in self.options.items()},
            "timeout": self.timeout, "data_key": self.key,
            "dispformula": self.model_dispformula,
        }
        return {**desc, "definition": definition_hash(desc)}

    @cached_property
    def definition_hash(self) -> str:
        """`definition_hash` of this problem: rows fitted under it carry it."""
        return self.describe()["definition"]


def _positive_seconds(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def default_r_engines(scenario: simulate.Scenario) -> tuple[str, ...]:
    """The R engines that fit a scenario's true model."""
    if scenario.smooth is not None:
        # mgcv's gam is the Gaussian REML reference; a GAMM's Laplace fit is gamm4's
        return ("mgcv", "gamm4") if make_family(scenario.family).residual else ("gamm4",)
    fam = make_family(scenario.family, scenario.resolved_link)
    if scenario.disp_slope is not None:
        return ("glmmTMB",)  # the R engine that fits a dispersion model
    if fam.multivariate and scenario.n_categories == 2:
        return ("lme4", *fam.r_engines)  # glmer's logistic model (reference_r names it as ours)
    return fam.r_engines


def problem_family(name: str, link: str | None) -> ResponseFamily | None:
    """The family of a problem, None for a name or link that is not one (the fit
    says so)."""
    try:
        return make_family(name, link)
    except FamilyError:
        return None


def _sim(name: str, scenario: str | simulate.Scenario | None = None, **kw) -> Problem:
    s = simulate.SCENARIOS[scenario or name] if not isinstance(scenario, simulate.Scenario) \
        else scenario
    kw.setdefault("engines", default_r_engines(s))
    return Problem(name=name, family=s.family, link=s.resolved_link, scenario=s, **kw)


_CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

_DATASET_PROBLEMS = (
    Problem("cbpp", "binomial", dataset="cbpp", formula=_CBPP, engines=("lme4", "glmmTMB")),
    Problem("cbpp_agq25", "binomial", dataset="cbpp", formula=_CBPP, nagq=25,
            engines=("lme4",)),
    Problem("cbpp_probit", "binomial", "probit", dataset="cbpp", formula=_CBPP,
            engines=("lme4", "glmmTMB")),
    Problem("sleepstudy", "gaussian", dataset="sleepstudy",
            formula="Reaction ~ Days + (Days | Subject)", engines=("lme4", "glmmTMB")),
    Problem("sleepstudy_uncorr_ml", "gaussian", dataset="sleepstudy",
            formula="Reaction ~ Days + (Days || Subject)", reml=False,
            engines=("lme4", "glmmTMB", "mgcv")),
    Problem("penicillin", "gaussian", dataset="Penicillin",
            formula="diameter ~ 1 + (1 | plate) + (1 | sample)", engines=("lme4", "glmmTMB")),
    Problem("grouseticks", "poisson", dataset="grouseticks",
            formula="TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)",
            engines=("lme4", "glmmTMB")),
    Problem("grouseticks_nb", "negative_binomial", dataset="grouseticks",
            formula="TICKS ~ YEAR + (1 | LOCATION)", engines=("lme4", "glmmTMB")),
    Problem("verbagg_crossed", "binomial", dataset="VerbAgg",
            formula="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
            engines=("lme4", "glmmTMB")),
    # independent category effects: mgcv's multinom model, so the two are compared
    # like with like (mgcv-re-nongaussian-estimates); correlated effects, which no R
    # package fits, are the simulated multinomial_intercept's
    Problem("verbagg_multinom", "multinomial", dataset="VerbAgg",
            formula="resp ~ Anger + Gender + (1 || item)", engines=("mgcv",)),
    Problem("wine", "ordinal", dataset="wine", formula="rating ~ temp + contact + (1 | judge)",
            engines=("ordinal",)),
    Problem("soup", "ordinal", dataset="soup",
            formula="SURENESS ~ PROD + (1 | RESP)", engines=("ordinal",)),
)

# Modest sizes for the quick suite; the full suite adds every scenario and the large ones.
_QUICK_SIM = (
    "gaussian_intercept", "gaussian_slopes", "gaussian_crossed", "binomial_binary",
    "binomial_trials", "poisson_intercept", "poisson_crossed", "negbin_intercept",
    "ordinal_logit", "ordinal_slopes", "multinomial_intercept", "gaussian_smooth",
    "poisson_smooth", "gamma_log",
    "nbinom1_crossed", "beta_intercept", "truncated_poisson_intercept",
    "truncated_nbinom2_intercept", "truncated_nbinom1_intercept", "genpois_intercept",
    "betabinomial_intercept", "t_intercept", "tweedie_intercept", "negbin_dispformula",
    "ordbeta_intercept", "compois_intercept",
)
_LARGE = ("gaussian_slopes_large", "binomial_binary_large", "poisson_crossed_large")

_SIM_PROBLEMS = tuple(
    _sim(name, replicates=5, timeout=900) if name in _LARGE else _sim(name)
    for name in simulate.SCENARIOS
)

# Accuracy against node count: one small-cluster binary model (clusters of 3, where
# the Laplace approximation is biased) fitted at increasing nagq on the same data.
AGQ_NODES = (1, 3, 5, 9, 15, 25)
_AGQ_SERIES = tuple(
    _sim(f"agq_nodes_{k:02d}", "binomial_small_groups", nagq=k, data_key="agq_nodes",
         engines=("lme4",))
    for k in AGQ_NODES
)

# Validity: every family and estimator against its known truth, natively, with
# enough replicates that bias and coverage carry small Monte Carlo errors. Each
# scenario's estimators fit the same replicates (one data_key). Binary outcomes in
# clusters of 3 show the Laplace approximation's bias and AGQ's correction.
VALIDITY_REPLICATES = 500
_VALIDITY = (
    ("gaussian_intercept", ({"reml": True}, {"reml": False})),
    ("gaussian_slopes", ({"reml": True},)),
    ("gaussian_crossed", ({"reml": True},)),
    ("binomial_small_groups", ({"nagq": 1}, {"nagq": 5}, {"nagq": 15})),
    ("binomial_binary", ({"nagq": 1},)),
    ("binomial_trials", ({"nagq": 1},)),
    ("poisson_intercept", ({"nagq": 1}, {"nagq": 9})),
    ("negbin_intercept", ({"nagq": 1},)),
    ("gamma_log", ({"nagq": 1},)),
    ("ordinal_logit", ({"nagq": 1},)),
    ("multinomial_intercept", ({"nagq": 1},)),
    # glmmTMB's families (issue 26): a family parameter, a dispersion model
    ("beta_intercept", ({"nagq": 1},)),
    ("negbin_dispformula", ({"nagq": 1},)),
    ("tweedie_intercept", ({"nagq": 1},)),
)


def _estimator_label(est: Mapping) -> str:
    if "reml" in est:
        return "reml" if est["reml"] else "ml"
    return "laplace" if est["nagq"] == 1 else f"agq{est['nagq']:02d}"


_VALIDITY_PROBLEMS = tuple(
    _sim(f"validity_{name}_{_estimator_label(est)}", name, engines=(),
         data_key=f"validity_{name}", **est)
    for name, estimators in _VALIDITY for est in estimators
)

# Two categories: the multinomial model is glmer's logistic model (K = 2), checked
# against lme4 as well as mgcv.
_BASE_MULTINOMIAL = simulate.SCENARIOS["multinomial_intercept"]
_MULTINOMIAL_BINARY = _sim("multinomial_binary", dataclasses.replace(
    _BASE_MULTINOMIAL, n_categories=2, intercept=(_BASE_MULTINOMIAL.intercept[0],),
    beta_x=(_BASE_MULTINOMIAL.beta_x[0],)))

# Seconds-long problems for smoke tests of the harness itself.
_SMOKE_PROBLEMS = (
    _sim("smoke_gaussian", dataclasses.replace(
        simulate.SCENARIOS["gaussian_intercept"], n_groups=15, group_size=6),
        engines=("lme4",), timeout=120),
    _sim("smoke_poisson", dataclasses.replace(
        simulate.SCENARIOS["poisson_intercept"], n_groups=8, group_size=5),
        engines=("lme4",), timeout=120),
    _sim("smoke_smooth", dataclasses.replace(
        simulate.SCENARIOS["gaussian_smooth"], n_groups=8, group_size=5),
        engines=("gamm4",), timeout=120),
    # a model the native engine does not fit (tensor-product smooths): the
    # "not supported" rows
    _sim("smoke_tensor", dataclasses.replace(
        simulate.SCENARIOS["gaussian_smooth"], n_groups=8, group_size=5),
        formula="y ~ te(x) + (1 | g)", engines=(), timeout=120),
)

PROBLEMS: dict[str, Problem] = {
    p.name: p for p in (*_DATASET_PROBLEMS, *_SIM_PROBLEMS, _MULTINOMIAL_BINARY, *_AGQ_SERIES,
                        *_VALIDITY_PROBLEMS, *_SMOKE_PROBLEMS)
}


@dataclass(frozen=True)
class Suite:
    """Named problems and the replicate count of their simulated ones."""

    name: str
    problem_names: tuple[str, ...]
    replicates: int
    description: str

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(PROBLEMS[n] for n in self.problem_names)


SUITES: dict[str, Suite] = {
    "smoke": Suite(
        "smoke", tuple(p.name for p in _SMOKE_PROBLEMS), 2,
        "four tiny simulated problems, native + lme4 / gamm4, and one model the native "
        "engine declines: a check of the harness"),
    "quick": Suite(
        "quick",
        ("cbpp", "cbpp_agq25", "cbpp_probit", "sleepstudy", "sleepstudy_uncorr_ml",
         "penicillin", "grouseticks", "grouseticks_nb", "verbagg_crossed", "verbagg_multinom",
         "wine", "soup", *_QUICK_SIM, "multinomial_binary", *(p.name for p in _AGQ_SERIES)),
        2,
        "every family with an R engine, real datasets and modest simulations; "
        "a few minutes on two cores"),
    "validity": Suite(
        "validity", tuple(p.name for p in _VALIDITY_PROBLEMS), VALIDITY_REPLICATES,
        "every family and estimator (Laplace, AGQ at several node counts, REML and ML) "
        "against its known truth, natively: bias, RMSE and Wald coverage with Monte "
        "Carlo errors; minutes on two Dask workers"),
    "full": Suite(
        "full",
        tuple(p.name for p in (*_DATASET_PROBLEMS, *_SIM_PROBLEMS, _MULTINOMIAL_BINARY,
                               *_AGQ_SERIES)),
        20,
        "every dataset problem and every simulate scenario (large ones 5 times)"),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; one of {', '.join(SUITES)}")
    return SUITES[name]


def replicates_of(problem: Problem, suite_replicates: int, override: int | None = None) -> int:
    """Replicates to run: 1 for a dataset; else the override, the problem's or the suite's."""
    if not problem.simulated:
        return 1
    if override is not None:
        return override
    return problem.replicates if problem.replicates is not None else suite_replicates
