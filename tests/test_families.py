"""Links and families: properties over every registry entry, and live equality with R."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special

from glmmbench import families as fam
from glmmbench.errors import DataError, FamilyError

EPS = np.finfo(float).eps
THETA = 2.5
PAIRS = [(f, link) for f, d in fam.FAMILIES.items() for link in d.links]
SETTINGS = settings(max_examples=80, deadline=None)


def _family(name: str, link: str | None = None, theta: float = THETA) -> fam.Family:
    return fam.get_family(name, link, theta=theta if name == "negative_binomial" else None)


def _vec(elements, max_size=12):
    return st.lists(elements, min_size=1, max_size=max_size).map(np.array)


def _vec_n(elements, size):
    return st.lists(elements, min_size=size, max_size=size).map(np.array)


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _signed(lo, hi):
    return st.one_of(_floats(lo, hi), _floats(-hi, -lo))


# Where neither linkinv nor mu_eta is clamped by R's safeguards.
ETA_DOMAIN = {
    "logit": _floats(-30, 30), "probit": _floats(-8, 8), "cloglog": _floats(-36, 3.5),
    "cauchit": _floats(-3e7, 3e7), "log": _floats(-36, 700),
    "identity": _floats(-1e300, 1e300), "inverse": _signed(1e-300, 1e300),
    "sqrt": _floats(1e-150, 1e150),
}
MU_DOMAIN = {
    "logit": _floats(1e-13, 1 - 1e-13), "probit": _floats(1e-15, 1 - 1e-15),
    "cloglog": _floats(1e-15, 1 - 1e-15), "cauchit": _floats(1e-15, 1 - 1e-15),
    "log": _floats(1e-15, 1e300), "identity": _floats(-1e300, 1e300),
    "inverse": _signed(1e-300, 1e300), "sqrt": _floats(1e-300, 1e300),
}
# Where mu_eta is well above its EPS floor, so finite differences can see it.
FD_DOMAIN = {
    "logit": _floats(-20, 20), "probit": _floats(-6, 6), "cloglog": _floats(-15, 2),
    "cauchit": _floats(-1e3, 1e3), "log": _floats(-20, 20), "identity": _floats(-1e6, 1e6),
    "inverse": _signed(0.1, 1e3), "sqrt": _floats(1e-2, 1e3),
}


# ------------------------------------------------------------------ registries


def test_domains_cover_every_link():
    assert set(ETA_DOMAIN) == set(MU_DOMAIN) == set(FD_DOMAIN) == set(fam.LINKS)


def test_registries_consistent():
    for name, link in fam.LINKS.items():
        assert link.name == name
    for name, fdef in fam.FAMILIES.items():
        assert fdef.name == name
        assert fdef.canonical in fdef.links
        assert set(fdef.links) <= set(fam.LINKS)
        f = _family(name)
        assert (f.name, f.link.name, f.canonical) == (name, fdef.canonical, fdef.canonical)


@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_get_family_pair(family, link):
    f = _family(family, link)
    assert f.name == family and f.link is fam.LINKS[link]
    assert f.theta == (THETA if family == "negative_binomial" else None)


# ------------------------------------------------------------------ link properties


@pytest.mark.parametrize("link", list(fam.LINKS))
@SETTINGS
@given(data=st.data())
def test_link_round_trip_eta(link, data):
    lk = fam.LINKS[link]
    eta = data.draw(_vec(ETA_DOMAIN[link]))
    mu = lk.linkinv(eta)
    back = lk.linkfun(mu)
    # Error of g(g^-1(eta)): rounding of mu (relative eps) divided by the slope mu_eta.
    tol = 8 * EPS * (np.abs(eta) + np.maximum(np.abs(mu), 1e-300) / np.abs(lk.mu_eta(eta)))
    assert np.all(np.abs(back - eta) <= tol)


@pytest.mark.parametrize("link", list(fam.LINKS))
@SETTINGS
@given(data=st.data())
def test_link_round_trip_mu(link, data):
    lk = fam.LINKS[link]
    mu = data.draw(_vec(MU_DOMAIN[link]))
    eta = lk.linkfun(mu)
    back = lk.linkinv(eta)
    tol = 8 * EPS * (np.abs(mu) + np.abs(eta) * np.abs(lk.mu_eta(eta)))
    assert np.all(np.abs(back - mu) <= tol)


@pytest.mark.parametrize("link", list(fam.LINKS))
@SETTINGS
@given(data=st.data())
def test_mu_eta_finite_difference(link, data):
    lk = fam.LINKS[link]
    eta = data.draw(_vec(FD_DOMAIN[link]))
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    up, down = lk.linkinv(eta + h), lk.linkinv(eta - h)
    fd = (up - down) / (2 * h)
    d = lk.mu_eta(eta)
    tol = 1e-6 * np.abs(d) + 8 * EPS * np.maximum(np.abs(up), np.abs(down)) / h
    assert np.all(np.abs(fd - d) <= tol)


@pytest.mark.parametrize("link", list(fam.LINKS))
def test_link_shapes_and_validity(link):
    lk = fam.LINKS[link]
    assert np.shape(lk.linkinv(0.5)) == ()
    assert lk.linkinv([0.5, 1.0]).shape == (2,)
    assert lk.mu_eta(np.ones((2, 3))).shape == (2, 3)
    assert lk.valideta(np.array([0.5, 2.0])) is True


def test_valideta_rejects_as_r():
    assert not fam.LINKS["inverse"].valideta([1.0, 0.0])
    assert not fam.LINKS["inverse"].valideta([1.0, np.inf])
    assert not fam.LINKS["sqrt"].valideta([1.0, -1.0])
    assert fam.LINKS["logit"].valideta([np.inf])  # R: TRUE for every eta


def test_clamps_as_r():
    assert fam.LINKS["logit"].linkinv(-40.0) == EPS / (1 + EPS)
    assert fam.LINKS["logit"].mu_eta(31.0) == EPS
    assert fam.LINKS["log"].linkinv(-800.0) == EPS
    assert fam.LINKS["cloglog"].linkinv(10.0) == 1 - EPS
    assert fam.LINKS["cloglog"].linkinv(-40.0) == EPS
    assert fam.LINKS["probit"].linkinv(-40.0) == fam.LINKS["probit"].linkinv(-9.0)
    assert fam.LINKS["cauchit"].linkinv(-1e300) == pytest.approx(EPS, rel=1e-12)


# ------------------------------------------------------------------ family data

# Means valid for the family under each of its links.
MEAN_DOMAIN = {
    "binomial": _floats(1e-10, 1 - 1e-10), "poisson": _floats(1e-10, 1e7),
    "negative_binomial": _floats(1e-10, 1e7), "gaussian": _floats(1e-3, 1e6),
}

INT_COUNTS = st.integers(0, 10**6).map(float)


@st.composite
def family_data(draw, name, *, separated=False):
    """(family, y, mu, wt) inside the family's support; binomial y = k / wt, wt trials."""
    size = draw(st.integers(1, 10))
    theta = 10 ** draw(st.floats(-2, 9)) if name == "negative_binomial" else THETA
    if name == "binomial":
        m = np.array(draw(st.lists(st.integers(1, 1000), min_size=size, max_size=size)), float)
        k = np.array([draw(st.integers(0, int(mi))) for mi in m], float)
        y, wt = k / m, m
        mu = draw(_vec_n(_floats(1e-10, 1 - 1e-10), size))
    elif name == "gaussian":
        y = draw(_vec_n(_floats(-1e6, 1e6), size))
        mu = draw(_vec_n(_floats(-1e6, 1e6), size))
        wt = draw(_vec_n(_floats(1e-2, 1e2), size))
    else:
        y = draw(_vec_n(INT_COUNTS, size))
        mu = draw(_vec_n(_floats(1e-10, 1e7), size))
        wt = draw(_vec_n(_floats(1e-2, 1e2), size))
    if separated:
        assume(np.all(np.abs(y - mu) > 1e-6 * np.maximum(1.0, np.maximum(np.abs(y), mu))))
    return _family(name, theta=theta), y, mu, wt


def _close(a, b, scale):
    """|a - b| within rounding of terms of size ``scale``."""
    return np.all(np.abs(a - b) <= 1e-10 * np.abs(b) + 256 * EPS * scale)


# ------------------------------------------------------------------ family properties


@pytest.mark.parametrize("name", list(fam.FAMILIES))
@SETTINGS
@given(data=st.data())
def test_dev_resids_zero_at_y(name, data):
    f, y, _, wt = data.draw(family_data(name))
    np.testing.assert_array_equal(f.dev_resids(y, y, wt), 0.0)


@pytest.mark.parametrize("name", list(fam.FAMILIES))
@SETTINGS
@given(data=st.data())
def test_dev_resids_positive_elsewhere(name, data):
    f, y, mu, wt = data.draw(family_data(name, separated=True))
    assert np.all(f.dev_resids(y, mu, wt) > 0)


@pytest.mark.parametrize("name", list(fam.FAMILIES))
@SETTINGS
@given(data=st.data())
def test_dev_resids_is_saturated_loglik_difference(name, data):
    # dev = 2 (l(y; y) - l(y; mu)); binomial with integer successes (wt = trials),
    # gaussian at dispersion 1.
    f, y, mu, wt = data.draw(family_data(name))
    sat, fit = f.loglik_obs(y, y, wt), f.loglik_obs(y, mu, wt)
    assert np.all(np.isfinite(sat)) and np.all(np.isfinite(fit))
    # Rounding of dev's own terms: R's binomial log((1-y)/(1-mu)) is ~eps absolute per
    # unit weight; Poisson and NB cancel y log(y/mu) against O(|y - mu|).
    scale = np.abs(sat) + np.abs(fit)
    if name != "gaussian":
        scale = scale + wt * (1 + np.abs(special.xlogy(y, y / mu)) + np.abs(y - mu))
    assert _close(f.dev_resids(y, mu, wt), 2 * (sat - fit), scale)


@pytest.mark.parametrize("name", list(fam.FAMILIES))
@SETTINGS
@given(data=st.data())
def test_weights_are_replicated_rows(name, data):
    f, y, mu, wt = data.draw(family_data(name))
    rows = f.dev_resids(np.r_[y, y], np.r_[mu, mu], np.r_[wt, wt])
    np.testing.assert_allclose(rows[: len(y)] + rows[len(y):], f.dev_resids(y, mu, 2 * wt),
                               rtol=1e-14)
    if name in ("poisson", "negative_binomial"):
        # Gaussian weights are precisions and binomial weights trials: not frequencies there.
        rows = f.loglik_obs(np.r_[y, y], np.r_[mu, mu], np.ones(2 * len(y)))
        np.testing.assert_allclose(rows[: len(y)] + rows[len(y):],
                                   f.loglik_obs(y, mu, 2.0), rtol=1e-14)


@pytest.mark.parametrize("name", list(fam.FAMILIES))
@SETTINGS
@given(data=st.data())
def test_loglik_against_plain_formula(name, data):
    # The saddle-point densities against the textbook lgamma forms, where those are exact.
    f, y, mu, wt = data.draw(family_data(name))
    if name == "binomial":
        k = np.round(y * wt)
        plain = (special.gammaln(wt + 1) - special.gammaln(k + 1) - special.gammaln(wt - k + 1)
                 + special.xlogy(k, mu) + special.xlog1py(wt - k, -mu))
    elif name == "poisson":
        plain = wt * (special.xlogy(y, mu) - mu - special.gammaln(y + 1))
    elif name == "negative_binomial":
        t = f.theta
        assume(t < 1e6)  # lgamma(theta + y) - lgamma(theta) cancels beyond
        plain = wt * (special.gammaln(y + t) - special.gammaln(t) - special.gammaln(y + 1)
                      - t * np.log1p(mu / t) + special.xlogy(y, mu / (t + mu)))
    else:
        plain = 0.5 * np.log(wt / (2 * np.pi)) - 0.5 * wt * (y - mu) ** 2
    if name == "binomial":
        scale = 3 * special.gammaln(wt + 1) - wt * (np.log(mu) + np.log1p(-mu))
    elif name == "gaussian":
        scale = 2 + np.abs(np.log(wt)) + wt * (y - mu) ** 2
    else:
        t = 0 if name == "poisson" else f.theta
        scale = wt * (2 * np.abs(special.gammaln(y + t + 1)) + np.abs(y * np.log(mu)) + mu
                      + np.abs(t * np.log1p(mu / max(t, 1e-300))))
    assert _close(f.loglik_obs(y, mu, wt), plain, scale)


@given(data=st.data())
@SETTINGS
def test_binomial_rounds_successes_and_uses_trials(data):
    f, y, mu, m = data.draw(family_data("binomial"))
    jitter = data.draw(_vec_n(_floats(-0.49, 0.49), len(y)))
    y_raw = np.clip(y + jitter / m, 0, 1)
    np.testing.assert_array_equal(f.loglik_obs(y_raw, mu, m), f.loglik_obs(y, mu, m))
    # cbind with prior weights w: R's wt = w * trials, n = trials, weight w on log dbinom.
    w = data.draw(_floats(0.1, 10))
    if np.any(m > 1):
        np.testing.assert_allclose(f.loglik_obs(y, mu, w * m, n=m), w * f.loglik_obs(y, mu, m),
                                   rtol=1e-14)


@pytest.mark.parametrize(("x", "lam"), [(29531.0, 29771.477325456075),
                                         (802046.0, 800427.531873734),
                                         (229246.0, 228328.29747356285), (3.0, 1e-5),
                                         (1e9, 1e9 + 12345.678)])
def test_dpois_accurate_to_ulps(x, lam):
    # Reference in 50-digit decimal arithmetic: -stirlerr - bd0 - log(2 pi x) / 2, with the
    # 12-term Stirling series (far beyond double precision at x >= 20).
    with localcontext() as ctx:
        ctx.prec = 50
        pi = Decimal("3.14159265358979323846264338327950288419716939937510")
        bern = [Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30),
                Fraction(5, 66), Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510),
                Fraction(43867, 798), Fraction(-174611, 330), Fraction(854513, 138),
                Fraction(-236364091, 2730)]
        X, L = Decimal(x), Decimal(lam)
        stirl = sum(Decimal(b.numerator) / Decimal(b.denominator) / (2 * k * (2 * k - 1))
                    / X ** (2 * k - 1) for k, b in enumerate(bern, start=1))
        if x < 20:  # the series is asymptotic: step up with the exact recursion
            stirl = sum(Decimal(b.numerator) / Decimal(b.denominator) / (2 * k * (2 * k - 1))
                        / (X + 20) ** (2 * k - 1) for k, b in enumerate(bern, start=1))
            for j in range(19, -1, -1):
                m = X + j
                stirl += (m + Decimal("0.5")) * ((m + 1) / m).ln() - 1
        truth = -stirl - (X * (X / L).ln() + L - X) - (2 * pi * X).ln() / 2
    ours = fam._log_dpois(np.array(x), np.array(lam))
    assert abs(Decimal(float(ours)) - truth) <= Decimal(4 * EPS) * (1 + abs(truth))


@given(theta=st.floats(1e4, 1e15), y=INT_COUNTS, mu=_floats(1e-3, 1e4))
@SETTINGS
def test_negative_binomial_tends_to_poisson(theta, y, mu):
    nb, pois = _family("negative_binomial", theta=theta), _family("poisson")
    # log NB - log Poisson = O(max(y, mu)^2 / theta), computed without theta*eps noise.
    gap = nb.loglik_obs(y, mu, 1.0) - pois.loglik_obs(y, mu, 1.0)
    bound = 4 * (max(y, mu) + 1) ** 2 / theta + 64 * EPS * (y * abs(np.log(mu)) + mu + 50)
    assert abs(gap) <= bound


@pytest.mark.parametrize(("family", "link"), PAIRS)
@SETTINGS
@given(data=st.data())
def test_working_weights_fast_path_agrees(family, link, data):
    f = _family(family, link)
    lk = f.link
    eta = lk.linkfun(data.draw(_vec(MEAN_DOMAIN[family])))
    mu = lk.linkinv(eta)
    wt = np.linspace(0.5, 2, len(eta))
    plain = wt * lk.mu_eta(eta) ** 2 / f.variance(mu)
    # The plain path is the less accurate one: mu (1 - mu) loses eps / (1 - mu) near 1.
    rtol = 1e-14 + 16 * EPS / np.minimum(mu, 1 - mu) if family == "binomial" else 1e-14
    fast = f.working_weights(eta, mu, wt)
    assert np.all(np.abs(fast - plain) <= rtol * plain)


def test_canonical_fast_flags():
    fast = {(f, lk) for f, lk in PAIRS if _family(f, lk).canonical_fast}
    assert fast == {("gaussian", "identity"), ("binomial", "logit"), ("poisson", "log")}


@pytest.mark.parametrize("name", list(fam.FAMILIES))
def test_mustart_as_r_initialize(name):
    y, wt = np.array([0.0, 0.25, 1.0]), np.array([1.0, 4.0, 2.0])
    expected = {
        "binomial": (wt * y + 0.5) / (wt + 1),
        "poisson": y + 0.1,
        "gaussian": y,
        "negative_binomial": y + (y == 0) / 6,
    }[name]
    np.testing.assert_array_equal(_family(name).mustart(y, wt), expected)


def test_gaussian_mustart_needs_valid_start():
    with pytest.raises(DataError, match="starting values"):
        _family("gaussian", "log").mustart([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(DataError, match="starting values"):
        _family("gaussian", "inverse").mustart([1.0, 0.0], [1.0, 1.0])


def test_validmu_as_r():
    assert not _family("binomial").validmu([0.5, 1.0])
    assert not _family("poisson").validmu([0.0, 1.0])
    assert _family("gaussian").validmu([-1.0, np.nan])
    assert not _family("negative_binomial").validmu([0.0])


# ------------------------------------------------------------------ errors


def test_unknown_family():
    with pytest.raises(FamilyError, match="unknown family 'gamma'.*binomial.*poisson"):
        fam.get_family("gamma")


def test_unknown_link():
    with pytest.raises(FamilyError, match="unknown link 'nope'.*logit.*cloglog"):
        fam.get_family("binomial", "nope")


@pytest.mark.parametrize(("family", "link"), [("binomial", "identity"), ("poisson", "logit"),
                                              ("gaussian", "sqrt"),
                                              ("negative_binomial", "inverse")])
def test_link_not_allowed(family, link):
    allowed = ", ".join(fam.FAMILIES[family].links)
    with pytest.raises(FamilyError, match=f"not available for family '{family}'.*{allowed}"):
        fam.get_family(family, link, theta=THETA if family == "negative_binomial" else None)


def test_family_error_is_value_error():
    with pytest.raises(ValueError):
        fam.get_family("nope")


@pytest.mark.parametrize("theta", [0.0, -1.0, np.inf, np.nan, "a"])
def test_bad_theta(theta):
    with pytest.raises(FamilyError, match="theta"):
        fam.get_family("negative_binomial", theta=theta)


def test_theta_only_for_negative_binomial():
    with pytest.raises(FamilyError, match="theta"):
        fam.get_family("poisson", theta=2.0)
    with pytest.raises(FamilyError, match="theta"):
        _family("poisson").with_theta(2.0)


def test_family_equality_by_name_link_theta():
    assert _family("binomial", "probit") == _family("binomial", "probit")
    assert _family("binomial") != _family("binomial", "probit")
    assert _family("negative_binomial", theta=2.0) != _family("negative_binomial", theta=3.0)
    assert len({_family("poisson"), _family("poisson")}) == 1


def test_with_theta():
    nb = fam.get_family("negative_binomial", "sqrt")
    assert nb.theta is None
    with pytest.raises(FamilyError, match="no theta"):
        nb.variance([1.0])
    nb3 = nb.with_theta(3)
    assert nb3.theta == 3.0 and nb3.link.name == "sqrt" and nb.theta is None
    np.testing.assert_allclose(nb3.variance([3.0]), [6.0], rtol=1e-15)


# ------------------------------------------------------------------ live R


R_FAMILY = {
    "binomial": 'binomial(link = "{link}")',
    "poisson": 'poisson(link = "{link}")',
    "gaussian": 'gaussian(link = "{link}")',
    "negative_binomial": f'MASS::negative.binomial(theta = {THETA!r}, link = "{{link}}")',
}
# Linear predictors that hit R's clamps.
EXTREME_ETA = {
    "logit": [-40, -30, 30, 40], "probit": [-9, -8.2, 8.2, 9],
    "cloglog": [-40, -37, 3.6, 5, 701, 800], "cauchit": [-1e16, -1e15, 1e16],
    "log": [-40, -37], "identity": [], "inverse": [], "sqrt": [],
}


@pytest.fixture(scope="module")
def r():
    import rpy2.robjects as ro

    ro.r("suppressPackageStartupMessages(library(MASS))")

    def call(fun, *args):
        vecs = [ro.FloatVector(np.atleast_1d(np.asarray(a, float)).tolist()) for a in args]
        return np.array(fun(*vecs), dtype=float)  # copy: the R vector may be collected

    return ro, call


def _data(name, link, rng, n=60):
    if name == "binomial":
        mu = np.r_[rng.uniform(0.01, 0.99, n - 4), 1e-10, 1e-4, 1 - 1e-4, 1 - 1e-10]
        m = rng.integers(1, 30, n).astype(float)
        y = rng.binomial(m.astype(int), mu) / m
        return y, mu, m
    mu = np.exp(rng.uniform(-3, 6, n))
    wt = rng.uniform(0.5, 2, n)
    if name == "gaussian":
        return mu + rng.normal(0, 2, n), mu, wt
    if name == "poisson":
        return rng.poisson(mu).astype(float), mu, wt
    return rng.negative_binomial(THETA, THETA / (THETA + mu)).astype(float), mu, wt


@pytest.mark.r
@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_equals_r_family_object(r, family, link):
    ro, call = r
    rf = ro.r(R_FAMILY[family].format(link=link))
    f = _family(family, link)
    lk = f.link
    rng = np.random.default_rng(20240601)
    y, mu, wt = _data(family, link, rng)
    eta = np.r_[lk.linkfun(mu), EXTREME_ETA[link]]

    def same(ours, comp, *args, atol=0.0):
        theirs = call(rf.rx2(comp), *args)
        bad = np.abs(ours - theirs) > 1e-12 * np.abs(theirs) + atol
        assert not np.any(bad), (f"{family}/{link} {comp}", ours[bad], theirs[bad])

    # R's cloglog linkfun log(-log(1 - mu)) carries eps/mu of rounding; ours uses log1p.
    same(lk.linkfun(mu), "linkfun", mu, atol=EPS / mu if link == "cloglog" else 0.0)
    same(lk.linkinv(eta), "linkinv", eta)
    same(lk.mu_eta(eta), "mu.eta", eta)
    same(f.variance(mu), "variance", mu)
    dev = f.dev_resids(y, mu, wt)
    # MASS's NB dev.resids differs from ours (log1p) by rounding of its O(y + theta) terms.
    nb_atol = 64 * EPS * wt * (y + mu + THETA) if family == "negative_binomial" else 0.0
    same(dev, "dev.resids", y, mu, wt, atol=nb_atol)
    assert lk.valideta(eta) == bool(rf.rx2("valideta")(ro.FloatVector(eta))[0])
    assert f.validmu(mu) == bool(rf.rx2("validmu")(ro.FloatVector(mu))[0])

    n_trials = np.ones_like(y)
    aic_r = call(rf.rx2("aic"), y, n_trials, mu, wt, [dev.sum()])[0]
    if family == "gaussian":
        aic = -2 * f.loglik_obs(y, mu, wt, dev.sum() / len(y)).sum() + 2
    else:
        aic = -2 * f.loglik_obs(y, mu, wt).sum()
    np.testing.assert_allclose(aic, aic_r, rtol=1e-12, err_msg=f"{family}/{link} aic")


@pytest.mark.r
def test_binomial_aic_equals_r_with_rounding_and_trials(r):
    ro, call = r
    aic_r = ro.r("binomial()$aic")
    f = _family("binomial")
    rng = np.random.default_rng(7)
    mu = rng.uniform(0.02, 0.98, 80)
    m = rng.integers(1, 40, 80).astype(float)
    y_raw = rng.uniform(0, 1, 80)  # m * y not integer: R rounds
    ours = -2 * f.loglik_obs(y_raw, mu, m).sum()
    np.testing.assert_allclose(ours, call(aic_r, y_raw, np.ones(80), mu, m, [0.0])[0],
                               rtol=1e-12)
    # cbind(successes, failures) with prior weights w: R's wt = w * trials and n = trials.
    y = rng.binomial(m.astype(int), mu) / m
    w = rng.uniform(0.5, 3, 80)
    ours = -2 * f.loglik_obs(y, mu, w * m, n=m).sum()
    np.testing.assert_allclose(ours, call(aic_r, y, m, mu, w * m, [0.0])[0], rtol=1e-12)


@pytest.mark.r
def test_densities_equal_r_over_wide_ranges(r):
    ro, call = r
    rng = np.random.default_rng(11)
    lam = np.exp(rng.uniform(-20, 25, 400))
    x = np.r_[rng.poisson(np.minimum(lam, 1e15)).astype(float)[:300], rng.integers(0, 50, 100)]
    # R 4.2.2's dpois is off by up to ~1e-11 absolute for counts ~1e5 (see
    # test_dpois_accurate_to_ulps); ours is within a few ulps there.
    np.testing.assert_allclose(fam._log_dpois(x, lam),
                               call(ro.r("function(x, l) dpois(x, l, log = TRUE)"), x, lam),
                               rtol=1e-11)
    n = rng.integers(1, 10**6, 400).astype(float)
    p = rng.uniform(0, 1, 400) ** 3
    k = rng.binomial(n.astype(int), p).astype(float)
    np.testing.assert_allclose(fam._log_dbinom(k, n, p),
                               call(ro.r("function(k, n, p) dbinom(k, n, p, log = TRUE)"),
                                    k, n, p), rtol=1e-13)
    for theta in (0.05, 2.5, 37.3, 1e4):
        mu = np.exp(rng.uniform(-5, 8, 200))
        y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
        np.testing.assert_allclose(
            fam._log_dnbinom(y, theta, mu),
            call(ro.r("function(y, t, m) dnbinom(y, size = t, mu = m, log = TRUE)"),
                 y, [theta], mu), rtol=1e-12, err_msg=f"theta={theta}")


@pytest.mark.parametrize("link", list(fam.LINKS))
def test_fused_linkinv_and_mu_eta_agree_with_the_plain_functions(link):
    """The fused path (logit: one exponential; log: mu_eta is linkinv) gives R's clamps."""
    lk = fam.LINKS[link]
    eta = np.concatenate([np.linspace(-40.0, 40.0, 20001), [-30.0, 30.0, -30.0000001, 29.99999]])
    eta = eta[np.array([bool(lk.valideta(np.array([e]))) for e in eta])]
    mu, d = lk.linkinv_and_mu_eta(eta)
    np.testing.assert_allclose(mu, lk.linkinv(eta), rtol=1e-15, atol=0)
    np.testing.assert_allclose(d, lk.mu_eta(eta), rtol=1e-15, atol=0)
