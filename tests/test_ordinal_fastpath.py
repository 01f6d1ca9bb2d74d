"""The logit fast path of OrdinalResponse (closed-form weights, p as a product)
against the general path (``fast=False``): same working values and log-densities."""

from dataclasses import replace

import numpy as np
import pytest

from glmmbench.families.ordinal import CUMULATIVE_LINKS, OrdinalFamily, OrdinalResponse

REL = 1e-9  # |eta - threshold| <= 20: both paths are accurate to rounding there


def _pair(nlevels, threshold, rng, n=3000):
    y = rng.integers(0, nlevels, n).astype(float)
    w = rng.uniform(0.5, 2.0, n)
    w[:3] = 0.0
    resp = OrdinalResponse(y, w, np.zeros(n), OrdinalFamily(CUMULATIVE_LINKS["logit"], threshold),
                           tuple(f"l{i}" for i in range(nlevels)))
    q = resp.param_start() + rng.normal(0.0, 0.3, resp.nparams)
    return resp.with_params(q), replace(resp, fast=False).with_params(q)


@pytest.mark.parametrize("nlevels, threshold", [(2, "flexible"), (3, "flexible"),
                                                (5, "equidistant"), (6, "symmetric")])
def test_logit_fast_path_equals_the_general_path(nlevels, threshold):
    rng = np.random.default_rng(nlevels)
    fast, plain = _pair(nlevels, threshold, rng)
    assert fast._logit and not plain._logit
    eta = rng.uniform(-8.0, 8.0, fast.y.size)
    a, b = fast.working(eta), plain.working(eta)
    for name in ("w", "wres", "w_obs", "dev"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=REL, atol=1e-300)
    E = rng.uniform(-8.0, 8.0, (fast.y.size, 5))
    np.testing.assert_allclose(fast.loglik_obs(E), plain.loglik_obs(E), rtol=REL, atol=1e-300)
    assert fast.minus2loglik(a.eta) == pytest.approx(plain.minus2loglik(eta), rel=1e-13)


def test_logit_fast_path_in_the_tails():
    """Far tails: finite where the probability is representable, -inf where it
    underflows (as the general path), no nan, no overflow warning."""
    rng = np.random.default_rng(7)
    fast, plain = _pair(4, "flexible", rng)
    eta = rng.normal(0.0, 300.0, fast.y.size)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        wv = fast.working(eta)
    assert not np.any(np.isnan(wv.dev)) and np.all(wv.w > 0) and np.all(np.isfinite(wv.wres))
    ll = fast.loglik_obs(eta)
    assert np.all(ll <= 0) and not np.any(np.isnan(ll))
    both = np.isfinite(plain.loglik_obs(eta))
    assert np.all(np.isfinite(ll[both]))
