"""Scenario: the frozen design knobs of one simulated multilevel data set.

A scenario describes the data-generating model; :func:`simulate.generate` draws one
data set from it. Knobs are checked once, in ``__post_init__``, and a bad knob
raises ``ValueError`` whose message starts with the knob's name, so that
``dataclasses.replace(scenario, n_groups=1)`` fails where it is written.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from ._links import FAMILY_LINKS, default_thresholds
from ._smooths import SMOOTHS

DESIGNS = ("single", "nested", "crossed")
SIZE_DISTS = ("balanced", "uniform", "geometric")

Coef = float | tuple[float, ...]


@dataclass(frozen=True)
class Scenario:
    """Knobs of a multilevel data-generating model.

    The linear predictor of observation ``i`` in group ``j`` is ::

        eta_ij = intercept + beta_x * x_ij + beta_z * z_j + f(x_ij)      (fixed part)
                 + b0_j + b1_j * x_ij                                    (group g)
                 + c_k | h_l                                             (nested | crossed)
                 + e_i                                                   (observation-level)

    with ``x ~ N(0, 1)`` (``Uniform(0, 1)`` when ``smooth`` is set and then
    ``f = SMOOTHS[smooth]`` replaces ``beta_x * x``), ``z ~ N(0, 1)`` a group-level
    covariate, ``(b0, b1) ~ N(0, [[var_intercept, .], [cor_slope * sd0 * sd1,
    var_slope]])``, ``c ~ N(0, var_group2)``, ``e ~ N(0, var_obs)``.

    Parameters
    ----------
    family, link
        Response family (``gaussian``, ``binomial``, ``poisson``,
        ``negative_binomial`` (NB2), ``nbinom1``, ``Gamma``, ``ordinal``,
        ``multinomial``; glmmTMB's ``beta``, ``truncated_poisson``,
        ``truncated_nbinom2`` (size ``nb_theta``), ``truncated_nbinom1`` (``nb_phi``),
        ``genpois``) and link by R's name; ``link=None`` is the family's default
        (``FAMILY_LINKS[family][0]``: the canonical link, ``log`` for the negative
        binomials and Gamma, ``logit`` for ordinal).
    n_groups
        Levels of the grouping factor ``g`` (at least 2).
    group_size, size_dist, min_group_size
        Observations per group. ``balanced``: every group has ``group_size``;
        ``uniform``: sizes uniform on ``[min_group_size, 2 * group_size -
        min_group_size]``; ``geometric``: ``min_group_size`` plus a geometric
        count, right-skewed with many small and a few large groups. Either way
        the expected size is ``group_size``.
    design, n_groups2, var_group2
        ``single``: one grouping factor ``g``. ``nested``: the ``n_groups`` groups
        sit in ``n_groups2`` clusters ``c`` (contiguous blocks, group labels
        unique across clusters), model term ``(1 | c/g)``, which lme4 expands to
        ``(1 | g:c) + (1 | c)``. ``crossed``: a second factor ``h`` with
        ``n_groups2`` levels, assigned to observations at random and balanced
        (each level ``N / n_groups2`` times, up to one), term ``(1 | h)``.
        ``var_group2`` is the intercept variance of ``c`` or ``h``.
    intercept, beta_x, beta_z
        Fixed effects; ``beta_z=None`` leaves the group-level covariate ``z`` out.
        Multinomial: one value per non-baseline category (a scalar is used for
        all). Ordinal: ``intercept`` must be 0, the thresholds carry it.
    smooth
        Name in ``SMOOTHS``: the model is additive, ``y ~ s(x) + ...``; then
        ``beta_x`` must be 0 and there is no random slope.
    var_intercept, var_slope, cor_slope
        Random intercept variance of ``g``; ``var_slope=None`` means no random
        slope, otherwise the term is ``(1 + x | g)`` with correlation
        ``cor_slope``. Multinomial: each non-baseline category has its own
        independent random intercept of variance ``var_intercept`` (mgcv's
        ``multinom`` with ``s(g, bs = "re")`` per linear predictor can fit that;
        it cannot fit correlated ones), and random slopes are not offered.
    var_obs
        Variance of an observation-level random effect ``(1 | obs)`` (overdispersion
        for binomial and Poisson); ``None`` leaves it out.
    sigma
        Gaussian residual standard deviation.
    trials
        Binomial trials per observation: 1 is a binary response ``y``; more gives
        ``cbind(y, n - y)`` with a column ``n``.
    nb_theta
        Negative binomial (NB2) size, R's ``theta``: ``Var = mu + mu^2 / theta``.
    nb_phi
        NB1 dispersion, glmmTMB's ``nbinom1`` phi: ``Var = mu (1 + phi)`` (an NB with
        size ``mu / phi``).
    gamma_shape
        Gamma shape ``k``: ``Var = mu^2 / k``; the coefficient of variation
        ``1 / sqrt(k)`` is glmmTMB's ``sigma()`` of a Gamma fit.
    beta_phi
        Beta precision, glmmTMB's ``beta_family`` phi: ``Var = mu (1 - mu) / (1 + phi)``;
        also the beta-binomial's (``betabinomial``, with ``trials`` > 1).
    gp_phi
        Generalized Poisson dispersion, glmmTMB's ``genpois`` phi: ``Var = phi mu``
        (above 1: overdispersion).
    ob_cuts
        Ordered beta's cut points (glmmTMB's ``ordbeta`` psi, logit scale): ``P(0) = 1 -
        expit(eta - ob_cuts[0])``, ``P(1) = expit(eta - ob_cuts[1])``, else a beta
        draw of precision ``beta_phi``.
    cp_phi
        COM-Poisson dispersion, glmmTMB's ``compois`` phi = 1 / nu (below 1:
        underdispersion; the variance is about phi mu).
    t_df
        Student t degrees of freedom (glmmTMB's ``t_family``; its scale is ``sigma``).
    tw_phi, tw_power
        Tweedie dispersion and power (glmmTMB's ``tweedie``): ``Var = phi mu^power``,
        ``1 < power < 2``, a compound Poisson-gamma with exact zeros.
    disp_slope
        A dispersion model (glmmTMB's ``dispformula = ~ x``): glmmTMB's ``betad = b0 +
        disp_slope * x`` per observation, ``b0`` the family's dispersion above on
        glmmTMB's scale (``DISP_FAMILIES``: the log variance ``2 log sigma`` for
        gaussian, the log size for NB2, log phi for NB1 and beta, the log shape for
        Gamma); None: a constant dispersion.
    n_categories, thresholds
        Ordinal and multinomial categories. Ordinal thresholds (clmm's
        ``P(Y <= k) = F(theta_k - eta)``) must increase; ``None`` makes the
        categories equally likely at ``eta = 0``.
    """

    family: str = "gaussian"
    link: str | None = None
    n_groups: int = 40
    group_size: int = 10
    size_dist: str = "balanced"
    min_group_size: int = 1
    design: str = "single"
    n_groups2: int = 0
    var_group2: float = 0.0
    intercept: Coef = 0.0
    beta_x: Coef = 0.5
    beta_z: Coef | None = None
    smooth: str | None = None
    var_intercept: float = 0.5
    var_slope: float | None = None
    cor_slope: float = 0.0
    var_obs: float | None = None
    sigma: float = 1.0
    trials: int = 1
    nb_theta: float = 2.0
    nb_phi: float = 1.0
    gamma_shape: float = 2.0
    beta_phi: float = 8.0
    gp_phi: float = 2.0
    ob_cuts: tuple[float, float] = (-2.0, 2.0)
    cp_phi: float = 0.7
    t_df: float = 4.0
    tw_phi: float = 1.0
    tw_power: float = 1.5
    disp_slope: float | None = None
    n_categories: int = 3
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for check in _CHECKS:
            check(self)

    @property
    def resolved_link(self) -> str:
        """The link by R's name, the family's canonical one when ``link`` is None."""
        return self.link if self.link is not None else FAMILY_LINKS[self.family][0]

    @property
    def resolved_thresholds(self) -> tuple[float, ...]:
        """Ordinal thresholds, the default ones when ``thresholds`` is None."""
        if self.thresholds is not None:
            return tuple(float(t) for t in self.thresholds)
        return default_thresholds(self.n_categories, self.resolved_link)

    @property
    def n_coef_sets(self) -> int:
        """Linear predictors: ``n_categories - 1`` for multinomial, else 1."""
        return self.n_categories - 1 if self.family == "multinomial" else 1

    def knobs(self) -> dict:
        """The knobs as a plain dict (JSON-serializable)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def _fail(knob: str, problem: str, value) -> None:
    raise ValueError(f"{knob}: {problem}, got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(s: Scenario, knob: str, low: int) -> None:
    v = getattr(s, knob)
    if not _is_int(v) or v < low:
        _fail(knob, f"must be an integer >= {low}", v)


def _variance(s: Scenario, knob: str, optional: bool = False) -> None:
    v = getattr(s, knob)
    if optional and v is None:
        return
    if not _is_real(v) or v < 0:
        _fail(knob, "must be a finite variance >= 0", v)


def _check_family(s: Scenario) -> None:
    if s.family not in FAMILY_LINKS:
        _fail("family", f"must be one of {sorted(FAMILY_LINKS)}", s.family)
    if s.link is not None and s.link not in FAMILY_LINKS[s.family]:
        _fail("link", f"family {s.family!r} takes one of {FAMILY_LINKS[s.family]}", s.link)


def _check_sizes(s: Scenario) -> None:
    _int_at_least(s, "n_groups", 2)
    _int_at_least(s, "group_size", 1)
    _int_at_least(s, "min_group_size", 1)
    if s.size_dist not in SIZE_DISTS:
        _fail("size_dist", f"must be one of {SIZE_DISTS}", s.size_dist)
    if s.size_dist != "balanced" and s.min_group_size > s.group_size:
        _fail("min_group_size", f"must not exceed group_size={s.group_size}", s.min_group_size)


def _check_design(s: Scenario) -> None:
    if s.design not in DESIGNS:
        _fail("design", f"must be one of {DESIGNS}", s.design)
    _variance(s, "var_group2")
    if s.design == "single":
        if s.n_groups2 != 0:
            _fail("n_groups2", "must be 0 for design='single'", s.n_groups2)
        if s.var_group2 != 0:
            _fail("var_group2", "must be 0 for design='single'", s.var_group2)
        return
    _int_at_least(s, "n_groups2", 2)
    if s.design == "nested" and s.n_groups < 2 * s.n_groups2:
        _fail("n_groups2", f"nested needs >= 2 groups per cluster (n_groups={s.n_groups})",
              s.n_groups2)
    if s.design == "crossed":
        smallest = s.group_size if s.size_dist == "balanced" else s.min_group_size
        if s.n_groups2 > s.n_groups * smallest:
            _fail("n_groups2", f"crossed needs every level observed, so at most "
                  f"{s.n_groups * smallest} levels", s.n_groups2)


def _coef(s: Scenario, knob: str, optional: bool = False) -> None:
    v = getattr(s, knob)
    if optional and v is None:
        return
    if isinstance(v, tuple):
        if s.family != "multinomial":
            _fail(knob, "a tuple of coefficients is only for family='multinomial'", v)
        if len(v) != s.n_coef_sets:
            _fail(knob, f"needs n_categories - 1 = {s.n_coef_sets} values", v)
        if not all(_is_real(c) for c in v):
            _fail(knob, "must hold finite numbers", v)
    elif not _is_real(v):
        _fail(knob, "must be a finite number", v)


def _check_fixed(s: Scenario) -> None:
    _coef(s, "intercept")
    _coef(s, "beta_x")
    _coef(s, "beta_z", optional=True)
    if s.family == "ordinal" and s.intercept != 0:
        _fail("intercept", "must be 0 for ordinal (the thresholds carry it)", s.intercept)
    if s.smooth is not None:
        if s.family == "multinomial":
            _fail("smooth", "multinomial scenarios have no smooth term", s.smooth)
        if s.smooth not in SMOOTHS:
            _fail("smooth", f"must be one of {sorted(SMOOTHS)}", s.smooth)
        if s.beta_x != 0:
            _fail("beta_x", "must be 0 with a smooth (x enters through s(x))", s.beta_x)
        if s.var_slope is not None:
            _fail("var_slope", "must be None with a smooth", s.var_slope)


def _check_random(s: Scenario) -> None:
    _variance(s, "var_intercept")
    _variance(s, "var_slope", optional=True)
    _variance(s, "var_obs", optional=True)
    if not _is_real(s.cor_slope) or abs(s.cor_slope) >= 1:
        _fail("cor_slope", "must be a correlation with |cor_slope| < 1", s.cor_slope)
    if s.family == "multinomial":
        if s.var_slope is not None:
            _fail("var_slope", "multinomial scenarios have random intercepts only", s.var_slope)
        if s.var_obs is not None:
            _fail("var_obs", "multinomial scenarios have no observation-level effect", s.var_obs)
        if s.design != "single":
            _fail("design", "multinomial scenarios have one grouping factor", s.design)


# the family knobs that are positive numbers, and what they are
_POSITIVE_KNOBS = (("nb_theta", "a finite size"), ("nb_phi", "a finite dispersion"),
                   ("gamma_shape", "a finite shape"), ("beta_phi", "a finite precision"),
                   ("cp_phi", "a finite dispersion"), ("t_df", "finite degrees of freedom"),
                   ("tw_phi", "a finite dispersion"))


def _check_response(s: Scenario) -> None:
    if not _is_real(s.sigma) or s.sigma <= 0:
        _fail("sigma", "must be a finite standard deviation > 0", s.sigma)
    _int_at_least(s, "trials", 1)
    for knob, what in _POSITIVE_KNOBS:
        v = getattr(s, knob)
        if not _is_real(v) or v <= 0:
            _fail(knob, f"must be {what} > 0", v)
    if (len(s.ob_cuts) != 2 or not all(_is_real(c) for c in s.ob_cuts)
            or not s.ob_cuts[0] < s.ob_cuts[1]):
        _fail("ob_cuts", "must be two increasing finite cut points", s.ob_cuts)
    if not _is_real(s.tw_power) or not 1 < s.tw_power < 2:
        _fail("tw_power", "must lie strictly between 1 and 2", s.tw_power)
    if not _is_real(s.gp_phi) or s.gp_phi < 1:
        _fail("gp_phi", "must be a finite dispersion >= 1 (the simulator draws "
              "overdispersed generalized Poisson counts)", s.gp_phi)
    _int_at_least(s, "n_categories", 2)
    if s.thresholds is not None:
        t = s.thresholds
        if not isinstance(t, tuple) or not all(_is_real(v) for v in t):
            _fail("thresholds", "must be a tuple of finite numbers", t)
        if len(t) != s.n_categories - 1:
            _fail("thresholds", f"needs n_categories - 1 = {s.n_categories - 1} values", t)
        if any(b <= a for a, b in zip(t, t[1:], strict=False)):
            _fail("thresholds", "must be strictly increasing", t)


# family first (others read it), response before fixed (coefficients read n_categories)
# the families whose dispersion ``disp_slope`` can model, and glmmTMB's betad at x = 0
DISP_FAMILIES = {
    "gaussian": lambda s: 2.0 * math.log(s.sigma),
    "negative_binomial": lambda s: math.log(s.nb_theta),
    "nbinom1": lambda s: math.log(s.nb_phi),
    "Gamma": lambda s: math.log(s.gamma_shape),
    "beta": lambda s: math.log(s.beta_phi),
    "betabinomial": lambda s: math.log(s.beta_phi),
}


def _check_dispersion_model(s: Scenario) -> None:
    if s.disp_slope is None:
        return
    if not _is_real(s.disp_slope):
        _fail("disp_slope", "must be a finite number or None", s.disp_slope)
    if s.family not in DISP_FAMILIES:
        _fail("disp_slope", f"a dispersion model is drawn for {sorted(DISP_FAMILIES)} only, "
              f"not family {s.family!r}", s.disp_slope)
    if s.smooth is not None:
        _fail("disp_slope", "x is a smooth's covariate there; no dispersion model with "
              "smooth", s.disp_slope)


_CHECKS = (_check_family, _check_sizes, _check_design, _check_response, _check_fixed,
           _check_random, _check_dispersion_model)
