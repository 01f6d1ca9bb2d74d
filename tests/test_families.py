"""Links and families: properties over every registry entry, and live equality with R."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from glmmbench.errors import DataError, FamilyError
from glmmbench.families import glm as fam

from .rscript import run_r

EPS = np.finfo(float).eps
THETA = 2.5
PHI = 1.7
SIGMA = 0.6
# The dispersion each family with one is built with (glmmTMB's sigma()).
DISPERSION = {"negative_binomial": THETA, "nbinom1": PHI, "Gamma": SIGMA}
# R's GLM families (and glmmTMB's nbinom1), each against R's family object; glmmTMB's
# other families are tested against glmmTMB in test_glmmtmb_families.py
R_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "Gamma")
PAIRS = [(f, link) for f in R_FAMILIES for link in fam.FAMILIES[f].links]
SETTINGS = settings(max_examples=80, deadline=None)


def _family(name: str, link: str | None = None, dispersion: float | None = None
            ) -> fam.Family:
    value = DISPERSION.get(name) if dispersion is None else dispersion
    return fam.get_family(name, link, dispersion=value)


def _dev_scale(f: fam.Family) -> float:
    """``c`` in ``-2 log f = dev_resids / c + const``: sigma^2 for Gamma, else 1."""
    return f.dispersion**2 if f.name == "Gamma" else 1.0


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
    for name in R_FAMILIES:
        fdef = fam.FAMILIES[name]
        f = _family(name)
        assert (f.name, f.link.name, f.canonical) == (name, fdef.canonical, fdef.canonical)
    assert {n: fam.FAMILIES[n].dispersion_name for n in R_FAMILIES
            if fam.FAMILIES[n].dispersion_name} == {
        "negative_binomial": "theta", "nbinom1": "phi", "Gamma": "sigma"}
    assert set(DISPERSION) == {n for n in R_FAMILIES if fam.FAMILIES[n].dispersion_name}
    assert not set(fam.FAMILY_ALIASES) & set(fam.FAMILIES)
    assert set(fam.FAMILY_ALIASES.values()) <= set(fam.FAMILIES)


def test_links_in_r_order():
    # R's okLinks of Gamma(); the negative binomials as MASS's negative.binomial().
    assert fam.FAMILIES["Gamma"].links == ("inverse", "log", "identity")
    assert fam.FAMILIES["nbinom1"].links == fam.FAMILIES["negative_binomial"].links
    assert fam.FAMILIES["Gamma"].canonical == "inverse"
    assert fam.FAMILIES["nbinom1"].canonical == "log"


@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_get_family_pair(family, link):
    f = _family(family, link)
    assert f.name == family and f.link is fam.LINKS[link]
    assert f.dispersion == DISPERSION.get(family)
    assert f.theta == (THETA if family == "negative_binomial" else None)
    assert f.dispersion_name == fam.FAMILIES[family].dispersion_name


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
@SETTINGS
@given(data=st.data())
def test_dmu_eta_finite_difference(link, data):
    lk = fam.LINKS[link]
    eta = data.draw(_vec(FD_DOMAIN[link]))
    h = 1e-5 * np.maximum(1.0, np.abs(eta))
    up, down = lk.mu_eta(eta + h), lk.mu_eta(eta - h)
    fd = (up - down) / (2 * h)
    d2 = lk.dmu_eta(eta)
    # truncation error h^2 (d^3 mu_eta / d eta^3) / 6: below 1e-5 (|dmu_eta| + |mu_eta|) here
    tol = 1e-5 * (np.abs(d2) + np.abs(lk.mu_eta(eta))) + 8 * EPS * np.maximum(
        np.abs(up), np.abs(down)) / h
    assert np.all(np.abs(fd - d2) <= tol)


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
    "nbinom1": _floats(1e-10, 1e7), "Gamma": _floats(1e-6, 1e6),
}
# Dispersions drawn by family_data (log10 range).
LOG10_DISPERSION = {"negative_binomial": (-2, 9), "nbinom1": (-6, 3), "Gamma": (-3, 1)}

INT_COUNTS = st.integers(0, 10**6).map(float)


@st.composite
def family_data(draw, name, *, separated=False):
    """(family, y, mu, wt) inside the family's support; binomial y = k / wt, wt trials."""
    size = draw(st.integers(1, 10))
    disp = 10 ** draw(st.floats(*LOG10_DISPERSION[name])) if name in DISPERSION else None
    if name == "binomial":
        m = np.array(draw(st.lists(st.integers(1, 1000), min_size=size, max_size=size)), float)
        k = np.array([draw(st.integers(0, int(mi))) for mi in m], float)
        y, wt = k / m, m
        mu = draw(_vec_n(_floats(1e-10, 1 - 1e-10), size))
    elif name == "gaussian":
        y = draw(_vec_n(_floats(-1e6, 1e6), size))
        mu = draw(_vec_n(_floats(-1e6, 1e6), size))
        wt = draw(_vec_n(_floats(1e-2, 1e2), size))
    elif name == "Gamma":
        y = draw(_vec_n(_floats(1e-6, 1e6), size))
        mu = draw(_vec_n(_floats(1e-6, 1e6), size))
        wt = draw(_vec_n(_floats(1e-2, 1e2), size))
    else:
        y = draw(_vec_n(INT_COUNTS, size))
        mu = draw(_vec_n(_floats(1e-10, 1e7), size))
        wt = draw(_vec_n(_floats(1e-2, 1e2), size))
    if separated:
        assume(np.all(np.abs(y - mu) > 1e-6 * np.maximum(1.0, np.maximum(np.abs(y), mu))))
    return _family(name, dispersion=disp), y, mu, wt


def _close(a, b, scale):
    """|a - b| within rounding of terms of size ``scale``."""
    return np.all(np.abs(a - b) <= 1e-10 * np.abs(b) + 256 * EPS * scale)


# ------------------------------------------------------------------ family properties


@pytest.mark.parametrize("name", R_FAMILIES)
@SETTINGS
@given(data=st.data())
def test_dev_resids_zero_at_y(name, data):
    f, y, _, wt = data.draw(family_data(name))
    np.testing.assert_array_equal(f.dev_resids(y, y, wt), 0.0)


@pytest.mark.parametrize("name", R_FAMILIES)
@SETTINGS
@given(data=st.data())
def test_dev_resids_positive_elsewhere(name, data):
    f, y, mu, wt = data.draw(family_data(name, separated=True))
    dev = f.dev_resids(y, mu, wt)
    if name == "nbinom1":
        # mu = y is not NB1's maximum (that lies above y, see the test below): positive
        # below y, and for y = 0 (where the maximum is mu = 0).
        below = (mu < y) | (y == 0)
        assert np.all(dev[below] > 0)
    else:
        assert np.all(dev > 0)


def test_nbinom1_dev_resids_negative_just_above_y():
    # d log f / d mu at mu = y is (digamma(y + y/phi) - digamma(y/phi) - log1p(phi)) / phi
    # > 0: the log density still rises past mu = y, so its "deviance" dips below 0.
    f = _family("nbinom1", dispersion=2.0)
    y = np.array([1.0, 3.0, 10.0])
    assert np.all(f.score(y, y) > 0)
    assert np.all(f.dev_resids(y, y * 1.01, 1.0) < 0)
    assert np.all(f.dev_resids(y, y * 10, 1.0) > 0)


@pytest.mark.parametrize("name", R_FAMILIES)
@SETTINGS
@given(data=st.data())
def test_dev_resids_is_saturated_loglik_difference(name, data):
    # dev = 2 (l(y; y) - l(y; mu)); binomial with integer successes (wt = trials),
    # gaussian at dispersion 1.
    # Gamma at the scale of dev_resids: 2 (l(y; y) - l(y; mu)) = dev / sigma^2.
    f, y, mu, wt = data.draw(family_data(name))
    sat, fit = f.loglik_obs(y, y, wt), f.loglik_obs(y, mu, wt)
    assert np.all(np.isfinite(sat)) and np.all(np.isfinite(fit))
    # Rounding of dev's own terms: R's binomial log((1-y)/(1-mu)) is ~eps absolute per
    # unit weight; Poisson and NB cancel y log(y/mu) against O(|y - mu|); Gamma's density
    # adds log terms of y, mu and the shape that cancel in the difference.
    scale = np.abs(sat) + np.abs(fit)
    if name == "Gamma":
        k = 1 / f.dispersion**2
        scale = scale + wt * (8 + np.abs(np.log(y)) + np.abs(np.log(mu)) + abs(np.log(k))
                              + k * (np.abs(y / mu - 1) + np.abs(np.log(y / mu))))
    elif name != "gaussian":
        scale = scale + wt * (1 + np.abs(special.xlogy(y, y / mu)) + np.abs(y - mu))
    assert _close(f.dev_resids(y, mu, wt) / _dev_scale(f), 2 * (sat - fit), scale)


@pytest.mark.parametrize("name", R_FAMILIES)
@SETTINGS
@given(data=st.data())
def test_weights_are_replicated_rows(name, data):
    f, y, mu, wt = data.draw(family_data(name))
    rows = f.dev_resids(np.r_[y, y], np.r_[mu, mu], np.r_[wt, wt])
    # atol: subnormal deviances (gaussian y - mu ~ 1e-160) carry fewer digits
    np.testing.assert_allclose(rows[: len(y)] + rows[len(y):], f.dev_resids(y, mu, 2 * wt),
                               rtol=1e-14, atol=1e-300)
    if name in ("poisson", "negative_binomial", "nbinom1", "Gamma"):
        # Gaussian weights are precisions and binomial weights trials: not frequencies there.
        rows = f.loglik_obs(np.r_[y, y], np.r_[mu, mu], np.ones(2 * len(y)))
        np.testing.assert_allclose(rows[: len(y)] + rows[len(y):],
                                   f.loglik_obs(y, mu, 2.0), rtol=1e-14)


@pytest.mark.parametrize("name", R_FAMILIES)
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
    elif name == "nbinom1":
        phi = f.dispersion
        t = mu / phi
        plain = wt * (special.gammaln(y + t) - special.gammaln(t) - special.gammaln(y + 1)
                      - t * np.log1p(phi) + special.xlogy(y, phi / (1 + phi)))
    elif name == "Gamma":
        k = 1 / f.dispersion**2
        plain = wt * ((k - 1) * np.log(y) - k * y / mu - special.gammaln(k) - k * np.log(mu / k))
    else:
        plain = 0.5 * np.log(wt / (2 * np.pi)) - 0.5 * wt * (y - mu) ** 2
    if name == "binomial":
        scale = 3 * special.gammaln(wt + 1) - wt * (np.log(mu) + np.log1p(-mu))
    elif name == "gaussian":
        scale = 2 + np.abs(np.log(wt)) + wt * (y - mu) ** 2
    elif name == "nbinom1":
        # the plain form cancels lgamma(y + t) against lgamma(t), t = mu / phi
        t = mu / f.dispersion
        scale = wt * (2 * np.abs(special.gammaln(y + t + 1)) + np.abs(special.gammaln(t))
                      + np.abs(special.xlogy(y, f.dispersion)) + t * np.log1p(f.dispersion)
                      + np.abs(special.gammaln(y + 1)) + 1)
    elif name == "Gamma":
        k = 1 / f.dispersion**2
        scale = wt * (k * np.abs(np.log(y)) + k * y / mu + np.abs(special.gammaln(k))
                      + k * np.abs(np.log(mu / k)) + np.abs(np.log(y)) + 1)
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
    nb, pois = _family("negative_binomial", dispersion=theta), _family("poisson")
    # log NB - log Poisson = O(max(y, mu)^2 / theta), computed without theta*eps noise.
    gap = nb.loglik_obs(y, mu, 1.0) - pois.loglik_obs(y, mu, 1.0)
    bound = 4 * (max(y, mu) + 1) ** 2 / theta + 64 * EPS * (y * abs(np.log(mu)) + mu + 50)
    assert abs(gap) <= bound


@given(phi=st.floats(1e-15, 1e-4), y=st.integers(0, 10**4).map(float), mu=_floats(1e-3, 1e4))
@SETTINGS
def test_nbinom1_tends_to_poisson(phi, y, mu):
    nb1, pois = _family("nbinom1", dispersion=phi), _family("poisson")
    # NB1 is NB2 with size mu / phi: the same bound with theta = mu / phi.
    gap = nb1.loglik_obs(y, mu, 1.0) - pois.loglik_obs(y, mu, 1.0)
    bound = 4 * (max(y, mu) + 1) ** 2 * phi / mu + 64 * EPS * (y * abs(np.log(mu)) + mu + 50)
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


@pytest.mark.parametrize("name", R_FAMILIES)
def test_mustart_as_r_initialize(name):
    y, wt = np.array([0.0, 0.25, 1.0]), np.array([1.0, 4.0, 2.0])
    if name == "Gamma":
        y = y + 0.5  # R's Gamma initialize stops at y <= 0
    expected = {
        "binomial": (wt * y + 0.5) / (wt + 1),
        "poisson": y + 0.1,
        "gaussian": y,
        "negative_binomial": y + (y == 0) / 6,
        "nbinom1": y + (y == 0) / 6,
        "Gamma": y,
    }[name]
    np.testing.assert_array_equal(_family(name).mustart(y, wt), expected)


def test_gamma_mustart_needs_positive_response():
    for y in ([1.0, 0.0], [2.0, -1.0]):
        with pytest.raises(DataError, match="non-positive values not allowed for the 'Gamma'"):
            _family("Gamma", "log").mustart(y, [1.0, 1.0])


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
    assert not _family("nbinom1").validmu([1.0, 0.0])
    assert _family("nbinom1").validmu([1e-300, 1e300])
    assert not _family("Gamma").validmu([1.0, 0.0])
    assert not _family("Gamma").validmu([1.0, np.inf])
    assert _family("Gamma").validmu([1e-300, 1e300])


# ------------------------------------------------------------------ errors


def test_unknown_family():
    with pytest.raises(FamilyError,
                       match="unknown family 'bell'.*binomial.*poisson.*nbinom1.*Gamma"
                             r".*aliases: nbinom2, gamma"):
        fam.get_family("bell")


def test_aliases():
    nb2 = fam.get_family("nbinom2", "sqrt", theta=2.0)
    assert nb2 == fam.get_family("negative_binomial", "sqrt", theta=2.0)
    assert nb2.name == "negative_binomial" and nb2.theta == 2.0
    assert fam.get_family("nbinom2", dispersion=2.0) == fam.get_family("negative_binomial",
                                                                       theta=2.0)
    g = fam.get_family("gamma", "log")
    assert g.name == "Gamma" and g.link.name == "log" and g.dispersion is None
    assert fam.get_family("gamma").link.name == "inverse"
    with pytest.raises(FamilyError, match="not available for family 'Gamma'"):
        fam.get_family("gamma", "sqrt")


def test_unknown_link():
    with pytest.raises(FamilyError, match="unknown link 'nope'.*logit.*cloglog"):
        fam.get_family("binomial", "nope")


@pytest.mark.parametrize(("family", "link"), [("binomial", "identity"), ("poisson", "logit"),
                                              ("gaussian", "sqrt"),
                                              ("negative_binomial", "inverse"),
                                              ("nbinom1", "inverse"), ("Gamma", "sqrt"),
                                              ("Gamma", "logit")])
def test_link_not_allowed(family, link):
    allowed = ", ".join(fam.FAMILIES[family].links)
    with pytest.raises(FamilyError, match=f"not available for family '{family}'.*{allowed}"):
        fam.get_family(family, link, dispersion=DISPERSION.get(family))


def test_family_error_is_value_error():
    with pytest.raises(ValueError):
        fam.get_family("nope")


@pytest.mark.parametrize("name", list(DISPERSION))
def test_dispersion_per_observation(name):
    """A dispformula model's dispersion, one per observation: the log-density at
    d_i is the log-density of the family with the one number d_i."""
    d = np.array([0.7, 1.3, 2.9])
    y, mu = np.array([1.0, 4.0, 2.5]), np.array([1.5, 3.0, 2.0])
    f = fam.get_family(name, dispersion=d)
    each = [fam.get_family(name, dispersion=v).loglik_obs(y[i:i + 1], mu[i:i + 1], 1.0)[0]
            for i, v in enumerate(d)]
    np.testing.assert_allclose(f.loglik_obs(y, mu, 1.0), each, rtol=1e-14)


@pytest.mark.parametrize("theta", [0.0, -1.0, np.inf, np.nan, "a"])
def test_bad_theta(theta):
    with pytest.raises(FamilyError, match="theta"):
        fam.get_family("negative_binomial", theta=theta)


@pytest.mark.parametrize("name", list(DISPERSION))
@pytest.mark.parametrize("value", [0.0, -1.0, np.inf, -np.inf, np.nan, "a", None, [1.0, -2.0],
                                   [1.0, np.nan], []])
def test_bad_dispersion(name, value):
    param = fam.FAMILIES[name].dispersion_name
    with pytest.raises(FamilyError, match=f"{name} {param} must be finite and > 0"):
        fam.get_family(name).with_dispersion(value)
    if value is not None:
        with pytest.raises(FamilyError, match=f"{name} {param} must be finite and > 0"):
            fam.get_family(name, dispersion=value)


def test_theta_only_for_negative_binomial():
    with pytest.raises(FamilyError, match="theta"):
        fam.get_family("poisson", theta=2.0)
    with pytest.raises(FamilyError, match="theta"):
        _family("poisson").with_theta(2.0)
    with pytest.raises(FamilyError, match="theta applies to negative_binomial only"):
        fam.get_family("nbinom1", theta=2.0)
    with pytest.raises(FamilyError, match="theta applies to negative_binomial only"):
        _family("Gamma").with_theta(2.0)
    with pytest.raises(FamilyError, match="not both"):
        fam.get_family("negative_binomial", theta=2.0, dispersion=2.0)


@pytest.mark.parametrize("name", ["gaussian", "binomial", "poisson"])
def test_dispersion_only_for_families_with_one(name):
    f = _family(name)
    assert f.dispersion is None and f.dispersion_name is None
    with pytest.raises(FamilyError, match=f"the {name} family has no dispersion parameter"):
        f.with_dispersion(2.0)
    with pytest.raises(FamilyError, match=f"the {name} family has no dispersion parameter"):
        fam.get_family(name, dispersion=2.0)


def test_family_equality_by_name_link_dispersion():
    assert _family("binomial", "probit") == _family("binomial", "probit")
    assert _family("binomial") != _family("binomial", "probit")
    assert _family("negative_binomial", dispersion=2.0) != _family("negative_binomial",
                                                                   dispersion=3.0)
    assert _family("nbinom1", dispersion=2.0) != _family("negative_binomial", dispersion=2.0)
    assert _family("Gamma", "log", 0.5) == fam.get_family("gamma", "log").with_dispersion(0.5)
    assert len({_family("poisson"), _family("poisson")}) == 1


def test_with_theta():
    nb = fam.get_family("negative_binomial", "sqrt")
    assert nb.theta is None
    with pytest.raises(FamilyError, match="no theta"):
        nb.variance([1.0])
    nb3 = nb.with_theta(3)
    assert nb3.theta == 3.0 and nb3.link.name == "sqrt" and nb.theta is None
    np.testing.assert_allclose(nb3.variance([3.0]), [6.0], rtol=1e-15)
    assert nb3 == nb.with_dispersion(3.0) and nb3.dispersion == 3.0


@pytest.mark.parametrize(("family", "link"), [p for p in PAIRS if p[0] in DISPERSION])
def test_with_dispersion_round_trip(family, link):
    f = fam.get_family(family, link)
    param = f.dispersion_name
    assert f.dispersion is None
    g = f.with_dispersion(0.75)
    assert (g.name, g.link, g.dispersion, g.dispersion_name) == (family, f.link, 0.75, param)
    assert f.dispersion is None  # frozen: a new family
    assert g == fam.get_family(family, link, dispersion=0.75)
    h = g.with_dispersion(4)
    assert h.dispersion == 4.0 and isinstance(h.dispersion, float)
    assert h.with_dispersion(0.75) == g
    y, mu = np.array([0.5, 2.0, 7.0]), np.array([1.0, 2.5, 6.0])
    np.testing.assert_array_equal(h.with_dispersion(0.75).loglik_obs(y, mu, 1.0),
                                  g.loglik_obs(y, mu, 1.0))
    # what needs the parameter raises without it, naming it
    with pytest.raises(FamilyError, match=f"no {param} yet"):
        f.loglik_obs(y, mu, 1.0)
    if family == "Gamma":  # variance, deviance and information are free of sigma
        np.testing.assert_array_equal(f.variance(mu), g.variance(mu))
        np.testing.assert_array_equal(f.dev_resids(y, mu, 1.0), g.dev_resids(y, mu, 1.0))
        np.testing.assert_array_equal(f.info(y, mu), g.info(y, mu))
    else:
        with pytest.raises(FamilyError, match=f"no {param} yet"):
            f.variance(mu)


@pytest.mark.parametrize(("name", "var"), [
    ("negative_binomial", lambda mu, d: mu + mu**2 / d),
    ("nbinom1", lambda mu, d: mu * (1 + d)),
    ("Gamma", lambda mu, d: mu**2),  # var(y) = sigma^2 V(mu)
])
def test_variance(name, var):
    mu = np.array([1e-8, 0.3, 2.0, 75.0, 3e6])
    for d in (0.01, 0.7, 40.0):
        np.testing.assert_allclose(_family(name, dispersion=d).variance(mu), var(mu, d),
                                   rtol=1e-15)


@pytest.mark.parametrize("name", list(DISPERSION))
def test_variance_is_the_distribution_variance(name):
    # The sample variance of draws from the family's density: glmmTMB's var(y | mu).
    rng = np.random.default_rng(5)
    mu, d = 6.0, {"negative_binomial": 2.0, "nbinom1": 1.5, "Gamma": 0.4}[name]
    f = _family(name, dispersion=d)
    if name == "Gamma":
        y = rng.gamma(1 / d**2, mu * d**2, 400_000)
        expected = d**2 * f.variance(mu)
    else:
        size = d if name == "negative_binomial" else mu / d
        y = rng.negative_binomial(size, size / (size + mu), 400_000)
        expected = f.variance(mu)
    assert y.var() == pytest.approx(expected, rel=0.02)
    assert y.mean() == pytest.approx(mu, rel=0.01)


@pytest.mark.parametrize("name", R_FAMILIES)
def test_loglik_obs_broadcasts_over_nodes(name):
    # AGQ evaluates M means per observation: y, wt (n, 1) against mu (n, M).
    rng = np.random.default_rng(3)
    f = _family(name)
    n, m = 7, 5
    mu = rng.uniform(0.05, 0.95, (n, m)) if name == "binomial" else rng.uniform(0.5, 9, (n, m))
    wt = rng.integers(1, 6, n).astype(float)
    y = {"binomial": rng.integers(0, 6, n) / 5.0, "gaussian": rng.normal(3, 2, n),
         "Gamma": rng.gamma(2.0, 2.0, n)}.get(name, rng.poisson(3, n).astype(float))
    kw = {"n": np.full((n, 1), 5.0)} if name == "binomial" else {}
    out = f.loglik_obs(y[:, None], mu, wt[:, None], **kw)
    assert out.shape == (n, m)
    for j in range(m):
        kw1 = {"n": np.full(n, 5.0)} if name == "binomial" else {}
        np.testing.assert_array_equal(out[:, j], f.loglik_obs(y, mu[:, j], wt, **kw1))


@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_members_take_scalars(family, link):
    f = _family(family, link)
    y, mu = (0.4, 0.3) if family == "binomial" else (2.0, 1.5)
    eta = float(f.link.linkfun(mu))
    values = [f.variance(mu), f.dev_resids(y, mu, 1.0), f.loglik_obs(y, mu, 1.0),
              f.info(y, mu), f.working_weights(eta, mu, 1.0),
              f.working_residuals(y, mu, f.link.mu_eta(eta)),
              f.observed_weights(y, eta, mu, 1.0), f.link.dmu_eta(eta)]
    for v in values:
        assert np.shape(v) == () and np.isfinite(v)


def _scipy_logpdf(f: fam.Family, y, mu):
    if f.name == "nbinom1":
        return stats.nbinom.logpmf(y, mu / f.dispersion, 1 / (1 + f.dispersion))
    if f.name == "negative_binomial":
        return stats.nbinom.logpmf(y, f.theta, f.theta / (f.theta + mu))
    k = 1 / f.dispersion**2
    return stats.gamma.logpdf(y, k, scale=mu / k)


@pytest.mark.parametrize("name", list(DISPERSION))
@pytest.mark.parametrize("disp", [1e-3, 0.2, 1.0, 2.5, 30.0])
def test_loglik_equals_scipy_stats(name, disp):
    rng = np.random.default_rng(int(disp * 1000))
    f = _family(name, dispersion=disp)
    mu = np.exp(rng.uniform(-4, 7, 300))
    wt = rng.uniform(0.2, 3, 300)
    if name == "Gamma":
        y = rng.gamma(1 / disp**2, mu * disp**2)
        # shape 1/30^2: draws underflow to 0 or subnormals, where scipy loses digits (ours
        # equals R's dgamma there)
        keep = y > 1e-300
        y, mu, wt = y[keep], mu[keep], wt[keep]
    else:
        size = mu / disp if name == "nbinom1" else disp
        y = rng.negative_binomial(size, size / (size + mu)).astype(float)
    ours = f.loglik_obs(y, mu, wt)
    # scipy's lgamma forms lose digits in proportion to the terms they cancel (shape
    # 1e6: 3e-9, where ours equals R's dgamma to 5e-11; see the live-R test).
    if name == "Gamma":
        k = 1 / disp**2
        terms = (np.abs(special.gammaln(k)) + k * (np.abs(np.log(y)) + abs(np.log(k))
                                                   + np.abs(np.log(mu)) + y / mu))
    else:
        size = mu / disp if name == "nbinom1" else disp
        terms = (np.abs(special.gammaln(y + size)) + np.abs(special.gammaln(size))
                 + special.gammaln(y + 1) + y * np.abs(np.log(mu / (size + mu)))
                 + size * np.abs(np.log(size / (size + mu))))
    assert _close(ours, wt * _scipy_logpdf(f, y, mu), wt * (terms + 1))


# ------------------------------------------------------------------ PIRLS derivatives

# Means, responses of moderate size for finite differences in eta.
def _fd_data(name, link, rng, n=40):
    f = _family(name, link)
    if name == "binomial":
        mu = rng.uniform(0.05, 0.95, n)
        wt = rng.integers(1, 20, n).astype(float)
        y = rng.binomial(wt.astype(int), mu) / wt
    else:
        mu = rng.uniform(0.3, 12, n)
        wt = rng.uniform(0.5, 2, n)
        y = {"gaussian": mu + rng.normal(0, 2, n), "Gamma": rng.gamma(3.0, mu / 3.0),
             "poisson": rng.poisson(mu), "negative_binomial": rng.negative_binomial(
                 THETA, THETA / (THETA + mu)), "nbinom1": rng.negative_binomial(
                 mu / PHI, 1 / (1 + PHI))}[name].astype(float)
    return f, y, f.link.linkfun(mu), wt


@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_working_values_are_loglik_derivatives(family, link):
    """working_weights * working_residuals = d l / d eta and observed_weights = -d2 l / d eta2,
    l the log density at the scale of dev_resids, by central differences."""
    f, y, eta, wt = _fd_data(family, link, np.random.default_rng(17))
    c = _dev_scale(f)

    def loglik(e):
        return c * f.loglik_obs(y, f.link.linkinv(e), wt)

    h = 1e-4 * np.maximum(1.0, np.abs(eta))
    l0, lp, lm = loglik(eta), loglik(eta + h), loglik(eta - h)
    lp2, lm2 = loglik(eta + 2 * h), loglik(eta - 2 * h)
    grad = (8 * (lp - lm) - (lp2 - lm2)) / (12 * h)  # fourth order
    hess = (-(lp2 + lm2) + 16 * (lp + lm) - 30 * l0) / (12 * h * h)
    mu, d = f.link.linkinv(eta), f.link.mu_eta(eta)
    w = f.working_weights(eta, mu, wt)
    noise = 64 * EPS * (np.abs(l0) + 1)
    np.testing.assert_allclose(w * f.working_residuals(y, mu, d), grad, rtol=1e-7,
                               atol=1e-8 + noise.max() / h.min())
    np.testing.assert_allclose(f.observed_weights(y, eta, mu, wt), -hess, rtol=1e-5,
                               atol=1e-6 + noise.max() / h.min() ** 2)


@pytest.mark.parametrize(("family", "link"), PAIRS)
def test_working_values_of_exponential_families(family, link):
    f, y, eta, wt = _fd_data(family, link, np.random.default_rng(4))
    mu, d = f.link.linkinv(eta), f.link.mu_eta(eta)
    w = f.working_weights(eta, mu, wt)
    if family == "nbinom1":
        # the quasi-score (y - mu) / V is not NB1's score
        assert np.max(np.abs(f.working_residuals(y, mu, d) - (y - mu) / d)) > 1e-2
        return
    np.testing.assert_array_equal(f.working_residuals(y, mu, d), (y - mu) / d)
    if f.canonical_fast:
        np.testing.assert_allclose(f.observed_weights(y, eta, mu, wt), w, rtol=1e-12)
    # E[observed information] = Fisher information: info is linear in y, E[y] = mu
    np.testing.assert_allclose(f.observed_weights(mu, eta, mu, wt), w, rtol=1e-12)


# ------------------------------------------------------------------ live R


R_FAMILY = {
    "binomial": 'binomial(link = "{link}")',
    "poisson": 'poisson(link = "{link}")',
    "gaussian": 'gaussian(link = "{link}")',
    "negative_binomial": f'MASS::negative.binomial(theta = {THETA!r}, link = "{{link}}")',
    "Gamma": 'Gamma(link = "{link}")',
    # glmmTMB's nbinom1() has its links and variance(mu, phi) but no density members
    # (its dev.resids is 0): those are written here from dnbinom(size = mu / phi).
    "nbinom1": (
        'local({{f <- glmmTMB::nbinom1(link = "{link}"); phi <- ' + repr(PHI) + '\n'
        'f$variance <- function(mu) glmmTMB::nbinom1()$variance(mu, phi)\n'
        'f$dev.resids <- function(y, mu, wt) 2 * wt * (dnbinom(y, size = y / phi, mu = y, '
        'log = TRUE) - dnbinom(y, size = mu / phi, mu = mu, log = TRUE))\n'
        'f$aic <- function(y, n, mu, wt, dev) -2 * sum(wt * dnbinom(y, size = mu / phi, '
        'mu = mu, log = TRUE))\n'
        'f$validmu <- function(mu) all(mu > 0)\n'
        'f}})'
    ),
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
    if name == "Gamma":
        return rng.gamma(1 / SIGMA**2, mu * SIGMA**2), mu, wt
    if name == "nbinom1":
        return rng.negative_binomial(mu / PHI, 1 / (1 + PHI)).astype(float), mu, wt
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
    # MASS's NB dev.resids differs from ours (log1p) by rounding of its O(y + theta) terms;
    # R's Gamma log(y/mu) - (y - mu)/mu cancels near y = mu, ours sums a series there;
    # NB1's is a difference of log densities, each rounded to its own size.
    dev_atol = 0.0
    if family == "negative_binomial":
        dev_atol = 64 * EPS * wt * (y + mu + THETA)
    elif family == "Gamma":
        dev_atol = 64 * EPS * wt * (1 + np.abs(np.log(y / mu)) + y / mu)
    elif family == "nbinom1":
        dev_atol = 64 * EPS * wt * (1 + np.abs(f.loglik_obs(y, y, 1.0))
                                    + np.abs(f.loglik_obs(y, mu, 1.0)))
    same(dev, "dev.resids", y, mu, wt, atol=dev_atol)
    assert lk.valideta(eta) == bool(rf.rx2("valideta")(ro.FloatVector(eta))[0])
    assert f.validmu(mu) == bool(rf.rx2("validmu")(ro.FloatVector(mu))[0])

    n_trials = np.ones_like(y)
    aic_r = call(rf.rx2("aic"), y, n_trials, mu, wt, [dev.sum()])[0]
    if family == "gaussian":
        aic = -2 * f.loglik_obs(y, mu, wt, dev.sum() / len(y)).sum() + 2
    elif family == "Gamma":
        # R's Gamma()$aic plugs in disp = dev / sum(wt): sigma = sqrt(disp)
        aic = -2 * f.with_dispersion(np.sqrt(dev.sum() / wt.sum())).loglik_obs(y, mu, wt).sum() + 2
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
    for phi in (1e-4, 0.3, 2.5, 1e3):
        mu = np.exp(rng.uniform(-12, 8, 300))
        y = np.r_[rng.negative_binomial(mu / phi, 1 / (1 + phi))[:250], rng.integers(0, 30, 50)]
        ours = _family("nbinom1", dispersion=phi).loglik_obs(y.astype(float), mu, 1.0)
        theirs = call(ro.r("function(y, p, m) dnbinom(y, size = m / p, mu = m, log = TRUE)"),
                      y, [phi], mu)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13, err_msg=f"phi={phi}")
    for sigma in (1e-3, 0.2, 1.0, 2.5, 30.0):
        mu = np.exp(rng.uniform(-10, 10, 300))
        y = np.r_[rng.gamma(1 / sigma**2, mu * sigma**2)[:250], np.exp(rng.uniform(-20, 20, 50))]
        y = np.where(y > 0, y, 1e-300)  # underflowed draws
        ours = _family("Gamma", dispersion=sigma).loglik_obs(y, mu, 1.0)
        theirs = call(ro.r("function(y, s, m) dgamma(y, 1 / s^2, scale = m * s^2, log = TRUE)"),
                      y, [sigma], mu)
        # R's dgamma forms y / scale from the rounded scale = mu * s^2
        bad = np.abs(ours - theirs) > 1e-12 * np.abs(theirs) + 4 * EPS * y / (mu * sigma**2)
        assert not bad.any(), (sigma, y[bad], mu[bad], ours[bad], theirs[bad])


@pytest.mark.parametrize("link", list(fam.LINKS))
def test_fused_linkinv_and_mu_eta_agree_with_the_plain_functions(link):
    """The fused path (logit: one exponential; log: mu_eta is linkinv) gives R's clamps."""
    lk = fam.LINKS[link]
    eta = np.concatenate([np.linspace(-40.0, 40.0, 20001), [-30.0, 30.0, -30.0000001, 29.99999]])
    eta = eta[np.array([bool(lk.valideta(np.array([e]))) for e in eta])]
    mu, d = lk.linkinv_and_mu_eta(eta)
    np.testing.assert_allclose(mu, lk.linkinv(eta), rtol=1e-15, atol=0)
    np.testing.assert_allclose(d, lk.mu_eta(eta), rtol=1e-15, atol=0)


# glmmTMB fits of simulated data (R's RNG), in one child R: no random effects, where
# logLik is exactly the sum of the log densities at the fitted means and sigma(), and a
# random intercept, where it is the Laplace approximation with the exact Hessian.
GLMMTMB_CASES = {
    "nbinom1-log": ("nbinom1", "log", False), "nbinom1-log-weights": ("nbinom1", "log", True),
    "nbinom1-sqrt": ("nbinom1", "sqrt", False), "nbinom2-log": ("nbinom2", "log", False),
    "Gamma-log": ("Gamma", "log", False), "Gamma-log-weights": ("Gamma", "log", True),
    "Gamma-inverse": ("Gamma", "inverse", False), "Gamma-identity": ("Gamma", "identity", False),
}
_GLMMTMB_R = r"""
suppressPackageStartupMessages(library(glmmTMB))
sim <- function(family, link, seed) {
  set.seed(seed)
  G <- 40; n <- 8 * G
  x <- runif(n, -1, 1); g <- factor(rep(seq_len(G), each = 8)); b <- rnorm(G, 0, 0.5)
  w <- runif(n, 0.5, 2)
  eta <- switch(link, log = 1 + 0.5 * x + b[g], sqrt = 2 + 0.4 * x + 0.3 * b[g],
                inverse = 0.5 + 0.1 * x + 0.15 * b[g], identity = 6 + x + 2 * b[g])
  mu <- make.link(link)$linkinv(eta)
  y <- switch(family, nbinom1 = rnbinom(n, size = mu / 1.8, mu = mu),
              nbinom2 = rnbinom(n, size = 1.5, mu = mu),
              Gamma = rgamma(n, shape = 1 / 0.4^2, scale = mu * 0.4^2))
  data.frame(y, x, g, w)
}
fam <- function(family, link) switch(family, nbinom1 = nbinom1(link), nbinom2 = nbinom2(link),
                                     Gamma = Gamma(link))
out <- list()
for (case in names(cases)) {
  cs <- cases[[case]]
  d <- sim(cs$family, cs$link, 20240 + match(case, names(cases)))
  args <- list(data = d, family = fam(cs$family, cs$link))
  if (cs$weights) args$weights <- d$w
  glm_fit <- do.call(glmmTMB, c(list(y ~ x), args))
  re_fit <- do.call(glmmTMB, c(list(y ~ x + (1 | g)), args))
  out[[case]] <- list(
    y = d$y, x = d$x, g = as.integer(d$g), w = if (cs$weights) d$w else rep(1, nrow(d)),
    glm_mu = unname(predict(glm_fit, type = "response")), glm_sigma = sigma(glm_fit),
    glm_loglik = as.numeric(logLik(glm_fit)),
    beta = unname(fixef(re_fit)$cond), sd = attr(VarCorr(re_fit)$cond$g, "stddev")[[1]],
    sigma = sigma(re_fit), loglik = as.numeric(logLik(re_fit)),
    pdHess = re_fit$sdr$pdHess)
}
out
"""


@pytest.fixture(scope="module")
def glmmtmb_fits():
    cases = ", ".join(f"`{k}` = list(family = {f!r}, link = {lk!r}, weights = {w!r})"
                      for k, (f, lk, w) in GLMMTMB_CASES.items())
    code = f"cases <- list({cases})\n" + _GLMMTMB_R.replace("'", '"')
    return run_r(code.replace("True", "TRUE").replace("False", "FALSE"))


def _case_family(case: str, sigma: float) -> fam.Family:
    family, link, _ = GLMMTMB_CASES[case]
    return fam.get_family(family, link, dispersion=sigma)


@pytest.mark.r
@pytest.mark.parametrize("case", list(GLMMTMB_CASES))
def test_loglik_equals_glmmtmb_without_random_effects(glmmtmb_fits, case):
    """glmmTMB's density and sigma() convention: logLik is the sum of loglik_obs."""
    r = glmmtmb_fits[case]
    f = _case_family(case, r["glm_sigma"])
    y, w, mu = (np.array(r[k], dtype=float) for k in ("y", "w", "glm_mu"))
    assert f.loglik_obs(y, mu, w).sum() == pytest.approx(r["glm_loglik"], rel=1e-12)
    if f.name == "nbinom1":
        # glmmTMB's optimum solves the exact score equations, not the quasi-Poisson ones
        X = np.column_stack([np.ones_like(y), np.array(r["x"])])
        eta = f.link.linkfun(mu)
        d = f.link.mu_eta(eta)
        wts = f.working_weights(eta, mu, w, d)
        exact = X.T @ (wts * f.working_residuals(y, mu, d))
        quasi = X.T @ (wts * (y - mu) / d)
        assert np.max(np.abs(exact)) < 1e-4 and np.max(np.abs(quasi)) > 1.0


def _laplace(f: fam.Family, y, x, g, w, beta, sd) -> float:
    """Laplace log-likelihood of ``y ~ x + (1 | g)`` at (beta, sd, f's dispersion): the
    mode by PIRLS (working_weights, working_residuals), the log-determinant from
    observed_weights; everything at the scale of dev_resids (Gamma: wt / sigma^2)."""
    ngroups = g.max() + 1
    fixed = beta[0] + beta[1] * x
    wd = w / _dev_scale(f)
    u = np.zeros(ngroups)
    for _ in range(200):
        eta = fixed + sd * u[g]
        mu, d = f.link.linkinv(eta), f.link.mu_eta(eta)
        ww = f.working_weights(eta, mu, wd, d)
        step = ((sd * np.bincount(g, ww * f.working_residuals(y, mu, d), ngroups) - u)
                / (sd**2 * np.bincount(g, ww, ngroups) + 1))
        u += step
        if np.max(np.abs(step)) < 1e-13:
            break
    else:
        raise AssertionError("PIRLS did not converge")
    eta = fixed + sd * u[g]
    mu = f.link.linkinv(eta)
    logdet = np.log(sd**2 * np.bincount(g, f.observed_weights(y, eta, mu, wd), ngroups) + 1)
    return f.loglik_obs(y, mu, w).sum() - 0.5 * (u @ u + logdet.sum())


@pytest.mark.r
@pytest.mark.parametrize("case", list(GLMMTMB_CASES))
def test_exact_laplace_equals_glmmtmb(glmmtmb_fits, case):
    """The families' pieces give glmmTMB's Laplace value at glmmTMB's estimates."""
    r = glmmtmb_fits[case]
    assert r["pdHess"] and r["sd"] > 0.05  # a regular fit, where the Laplace term matters
    f = _case_family(case, r["sigma"])
    y, x, w = (np.array(r[k], dtype=float) for k in ("y", "x", "w"))
    g = np.array(r["g"]) - 1
    ours = _laplace(f, y, x, g, w, np.array(r["beta"]), r["sd"])
    assert ours == pytest.approx(r["loglik"], abs=1e-7)


@pytest.mark.parametrize("name", sorted(R_FAMILIES))
def test_every_family_brings_its_draw_and_support(name):
    """A family is read through its registry entry (issue 24): simulate() draws with
    ``Family.draw`` and refit() checks ``Family.outside_support``; each entry has both,
    and a draw lies in the family's support."""
    fdef = fam.FAMILIES[name]
    assert callable(fdef.draw) and callable(fdef.support)
    family = fam.get_family(name)
    rng = np.random.default_rng(1)
    mu = np.full(4000, 0.3 if name == "binomial" else 2.5)
    y = family.draw(rng, mu, np.full(4000, 5.0), 1.5)
    bad, where, need = family.outside_support(y)
    assert y.shape == mu.shape and not bad.any() and where and need
    assert abs(y.mean() - mu.mean()) < 0.3  # 5 standard errors of the mean, or more
