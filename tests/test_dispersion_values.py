"""Values of the dispersion families' paths that had none (issue 22): ``simulate()``
moments of NB2, NB1 and Gamma fits, and the AGQ optimum with a dispersion parameter.
No R: glmmTMB has no AGQ, and the moments are the families' definitions.

1. ``simulate()`` moments. ``GLMMResult.simulate`` draws *new* random effects for
   every replicate (as lme4's default ``re.form = NA``; its docstring says so),
   then the response given them. With the fitted ``beta``, random-intercept sd ``s``
   and dispersion, each observation's marginal moments are, with
   ``mu_i(t) = linkinv(x_i' beta + s t)``, ``t ~ N(0, 1)`` (80-node Gauss-Hermite):

   - ``E y_i = E_t mu_i(t)``;
   - ``Var y_i = E_t V(mu_i(t)) + Var_t mu_i(t)``, ``V(mu)`` the family's variance:
     NB2 ``mu + mu^2 / theta``, NB1 ``mu (1 + phi)``, Gamma ``(CV mu)^2``;
   - ``Cov(y_i, y_j) = Cov_t(mu_i(t), mu_j(t))`` in one group, 0 across groups.

   With ``a_i = (y_i - E y_i) / sd y_i`` each replicate gives four pooled statistics
   (the mean of ``a_i``, of ``a_i^2 - 1``, of ``a_i a_j - corr_ij`` over pairs in one
   group, of ``a_i a_j`` over pairs in different groups), independent and
   identically distributed across the ``NSIM`` replicates; their average over the
   replicates must be within ``Z_TOL = 4.5`` Monte Carlo SEs (estimated from the
   replicates) of 0 (a false alarm has probability ~7e-6 per check; the seed is
   fixed, so the outcome is deterministic). Per observation, the mean over the
   replicates must be within ``Z_OBS`` SEs of ``E y_i``, a Bonferroni bound (a false
   alarm anywhere in the 300 observations: probability 1e-4). The statistics have
   teeth: the same variance statistic against the moments given ``b = 0`` (what a
   simulate that did not redraw the random effects, or drew none, would match) is
   over 100 SEs off (asserted: more than 5 Z_TOL).

   Cases: NB2, NB1 and Gamma with log links, and Gamma's default inverse link. With
   the inverse link, ``1 / eta`` of a normal ``eta`` strictly has no moments; here the
   fitted ``eta`` is at least 7 of its sds above 0 everywhere (asserted; 7.3 here), so
   the mass beyond is about 1e-12 and the Gauss-Hermite moments are those of the
   draws. (A draw with ``eta <= 0`` would make ``simulate()`` raise numpy's "scale <
   0": the model has no Gamma distribution there.)

2. The AGQ optimum with a dispersion. For NB2 and Gamma (log link), 20 groups x 5,
   ``y ~ x + (1 | g)``, the marginal likelihood is written here independently of the
   engine: each group's integral over ``v ~ N(0, 1)`` of
   ``prod_i f(y_ij | exp(x_ij' beta + s v))`` with ``f`` from ``scipy.stats``
   (``nbinom(theta, theta / (theta + mu))``, ``gamma(1 / CV^2, scale = mu CV^2)``), by
   the trapezoid rule with step 0.04 on ``[-10, 10]`` (the integrand is smooth and
   decays like a Gaussian, so the error falls like ``exp(-2 pi^2 s_post^2 / h^2)``:
   the grid equals ``scipy.integrate.quad`` group by group to 1e-9 in the deviance,
   asserted at the maximum; measured 1e-12). scipy's BFGS maximises it over
   ``(beta, log s, log dispersion)`` from a start that ignores the native fit. The
   native ``nagq = 15`` fit must reach the same maximum: log-likelihood within
   ``1e-4`` either way; ``beta``, ``s`` and the dispersion within ``1e-3`` relative
   (``beta`` with an absolute floor of ``1e-3 SE``); the SEs of ``beta`` and of the
   dispersion within ``1e-3`` relative of the inverse of the reference's
   central-difference Hessian (step 3e-3). The Laplace fit's log-likelihood is about
   0.02 off the same maximum, 200 times the tolerance.

Measured when written (NSIM = 10000): simulate pooled |z| at most 2.1 (mean), 1.7
(variance), 1.5 (within-group covariance), 1.2 (between groups), per-observation
|z| at most 3.4; the b = 0 variance statistic 123 to 157 SEs off. Power: the
variance statistic against moments with the dispersion 10 % off is 6 (NB2), 11
(NB1), 23 (Gamma log) and 150 (Gamma inverse) SEs off. AGQ: log-likelihood gaps at most
2e-9, estimates within 5e-7 relative, SEs within 7e-5 relative (the Hessian's
finite differences), the Laplace fits 0.020 (NB2) and 0.024 (Gamma) below.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

import glmmbench as gb

# ---------------------------------------------------------------- simulate moments
Z_TOL = 4.5
NOBS_SIM = 300
Z_OBS = float(stats.norm.isf(1e-4 / (2 * NOBS_SIM)))  # 5.4
NSIM = 10000
GH_T, GH_W = np.polynomial.hermite_e.hermegauss(80)
GH_W = GH_W / np.sqrt(2 * np.pi)

# name: (family, link)
SIM_CASES = {
    "nb2_log": ("negative_binomial", "log"),
    "nb1_log": ("nbinom1", "log"),
    "gamma_log": ("Gamma", "log"),
    "gamma_inverse": ("Gamma", "inverse"),
}


def _groups(G: int, M: int) -> tuple[np.ndarray, pd.Categorical]:
    g = np.repeat(np.arange(G), M)
    return g, pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])


@functools.cache
def sim_data(name: str) -> pd.DataFrame:
    """30 groups x 10; log links: eta = 1 + 0.5 x + b, sd(b) = 0.5, NB2 size 3, NB1 phi
    1.5, Gamma shape 4; Gamma inverse: eta = 1.2 + 0.2 x + b, sd(b) = 0.1 (so that eta
    stays far from 0), shape 10."""
    family, link = SIM_CASES[name]
    G, M = 30, 10
    rng = np.random.default_rng(11)
    g, gcat = _groups(G, M)
    x = rng.uniform(-1, 1, G * M)
    if link == "inverse":
        mu = 1.0 / (1.2 + 0.2 * x + 0.1 * rng.standard_normal(G)[g])
    else:
        mu = np.exp(1.0 + 0.5 * x + 0.5 * rng.standard_normal(G)[g])
    if family == "negative_binomial":
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu)).astype(float)
    elif family == "nbinom1":
        y = rng.negative_binomial(mu / 1.5, 1.0 / 2.5).astype(float)
    else:
        shape = 10.0 if link == "inverse" else 4.0
        y = rng.gamma(shape, mu / shape)
    return pd.DataFrame({"y": y, "x": x, "g": gcat})


def family_variance(family: str, mu: np.ndarray, dispersion: float) -> np.ndarray:
    if family == "negative_binomial":
        return mu + mu**2 / dispersion
    if family == "nbinom1":
        return mu * (1.0 + dispersion)
    return (dispersion * mu) ** 2


def _linkinv(link: str, eta: np.ndarray) -> np.ndarray:
    return np.exp(eta) if link == "log" else 1.0 / eta


@functools.cache
def simulated(name: str):
    family, link = SIM_CASES[name]
    data = sim_data(name)
    res = gb.fit("y ~ x + (1 | g)", data, family=family, link=link)
    assert res.converged, (name, res.messages)
    s = float(res.varcorr["sdcor"].iloc[0])
    lin = res.fixef["(Intercept)"] + res.fixef["x"] * data["x"].to_numpy()
    if link == "inverse":  # the module docstring: eta far from 0 for every draw that matters
        assert lin.min() >= 7 * s, (lin.min(), s)
    mu_t = _linkinv(link, lin[:, None] + s * GH_T[None, :])  # n x nodes
    mean = mu_t @ GH_W
    var = family_variance(family, mu_t, res.sigma) @ GH_W + (mu_t**2) @ GH_W - mean**2
    Y = res.simulate(nsim=NSIM, seed=2024).to_numpy()
    assert Y.shape == (data.shape[0], NSIM)
    return res, data, mu_t, mean, var, Y, lin


def _z(per_replicate: np.ndarray) -> float:
    """The mean over replicates of a statistic with expectation 0, in Monte Carlo SEs."""
    return float(per_replicate.mean() / (per_replicate.std(ddof=1) / np.sqrt(per_replicate.size)))


@pytest.mark.parametrize("name", sorted(SIM_CASES))
def test_simulate_mean_and_variance(name):
    res, data, _, mean, var, Y, lin = simulated(name)
    A = (Y - mean[:, None]) / np.sqrt(var[:, None])
    z_mean = _z(A.mean(axis=0))
    z_var = _z((A**2 - 1.0).mean(axis=0))
    assert abs(z_mean) < Z_TOL, (name, z_mean)
    assert abs(z_var) < Z_TOL, (name, z_var)
    z_obs = (Y.mean(axis=1) - mean) / np.sqrt(var / NSIM)
    assert np.abs(z_obs).max() < Z_OBS, (name, np.abs(z_obs).max())
    # teeth: the moments given b = 0 (no random effects drawn) are far off
    family, link = SIM_CASES[name]
    mu0 = _linkinv(link, lin)
    A0 = (Y - mu0[:, None]) / np.sqrt(family_variance(family, mu0, res.sigma)[:, None])
    assert abs(_z((A0**2 - 1.0).mean(axis=0))) > 5 * Z_TOL, name


@pytest.mark.parametrize("name", sorted(SIM_CASES))
def test_simulate_covariances(name):
    """Observations of one group share each replicate's random effect; groups are
    independent."""
    _, data, mu_t, mean, var, Y, _ = simulated(name)
    codes = data["g"].cat.codes.to_numpy()
    sd = np.sqrt(var)
    A = (Y - mean[:, None]) / sd[:, None]
    G = codes.max() + 1
    S = np.zeros((G, Y.shape[1]))
    np.add.at(S, codes, A)
    sq = np.zeros_like(S)
    np.add.at(sq, codes, A**2)
    sizes = np.bincount(codes)
    n_within = float(np.sum(sizes * (sizes - 1)))
    n_between = float(codes.size**2 - np.sum(sizes**2))
    within = (S**2 - sq).sum(axis=0)  # sum over ordered pairs i != j in one group
    between = S.sum(axis=0) ** 2 - (S**2).sum(axis=0)
    expected = 0.0  # sum over the same pairs of corr(y_i, y_j)
    for k in range(G):
        at = codes == k
        C = (mu_t[at] * GH_W) @ mu_t[at].T - np.outer(mean[at], mean[at])
        R = C / np.outer(sd[at], sd[at])
        expected += R.sum() - np.trace(R)
    assert expected / n_within > 0.05, name  # a visible covariance to find
    z_within = _z((within - expected) / n_within)
    z_between = _z(between / n_between)
    assert abs(z_within) < Z_TOL, (name, z_within, expected / n_within)
    assert abs(z_between) < Z_TOL, (name, z_between)


# ------------------------------------------------------------ AGQ with a dispersion
AGQ_NODES = 15
AGQ_LOGLIK_ABS = 1e-4
AGQ_EST_REL = 1e-3
AGQ_SE_REL = 1e-3
GRID_H = 0.04
GRID_V = np.arange(-10.0, 10.0 + GRID_H / 2, GRID_H)
HESS_STEP = 3e-3


@functools.cache
def agq_data(family: str) -> pd.DataFrame:
    """20 groups x 5: eta = 1 + 0.5 x + b, sd(b) = 0.6; NB2 size 2.5, Gamma shape 2."""
    G, M = 20, 5
    rng = np.random.default_rng(7)
    g, gcat = _groups(G, M)
    x = rng.uniform(-1, 1, G * M)
    mu = np.exp(1.0 + 0.5 * x + 0.6 * rng.standard_normal(G)[g])
    if family == "negative_binomial":
        y = rng.negative_binomial(2.5, 2.5 / (2.5 + mu)).astype(float)
    else:
        y = rng.gamma(2.0, mu / 2.0)
    return pd.DataFrame({"y": y, "x": x, "g": gcat})


def _logf(family: str, y, mu, dispersion):
    if family == "negative_binomial":
        return stats.nbinom.logpmf(y, dispersion, dispersion / (dispersion + mu))
    return stats.gamma.logpdf(y, a=1.0 / dispersion**2, scale=mu * dispersion**2)


def reference_deviance(p: np.ndarray, data: pd.DataFrame, family: str) -> float:
    """``-2 log L`` at ``p = (b0, b1, log s, log dispersion)``, trapezoid grid in v."""
    b0, b1, log_s, log_disp = p
    y, x = data["y"].to_numpy(), data["x"].to_numpy()
    codes = data["g"].cat.codes.to_numpy()
    eta = (b0 + b1 * x)[:, None] + np.exp(log_s) * GRID_V[None, :]
    logf = _logf(family, y[:, None], np.exp(eta), np.exp(log_disp))
    per_group = np.zeros((codes.max() + 1, GRID_V.size))
    np.add.at(per_group, codes, logf)
    per_group += stats.norm.logpdf(GRID_V)
    top = per_group.max(axis=1)
    inner = integrate.trapezoid(np.exp(per_group - top[:, None]), dx=GRID_H, axis=1)
    return float(-2.0 * np.sum(top + np.log(inner)))


def quad_deviance(p: np.ndarray, data: pd.DataFrame, family: str) -> float:
    """The same by ``scipy.integrate.quad``, group by group (the grid's check)."""
    b0, b1, log_s, log_disp = p
    total = 0.0
    for _, d in data.groupby("g", observed=True):
        y, lin = d["y"].to_numpy(), b0 + b1 * d["x"].to_numpy()

        def logint(v, y=y, lin=lin):
            return (np.sum(_logf(family, y, np.exp(lin + np.exp(log_s) * v), np.exp(log_disp)))
                    + stats.norm.logpdf(v))

        coarse = np.linspace(-10, 10, 201)
        vals = np.array([logint(v) for v in coarse])
        top, peak = vals.max(), coarse[int(np.argmax(vals))]
        val, _ = integrate.quad(lambda v, f=logint, c=top: np.exp(f(v) - c), -10, 10,
                                points=[peak], epsabs=0, epsrel=1e-12, limit=200)
        total += -2.0 * (top + np.log(val))
    return total


def _hessian(f, x: np.ndarray, h: float) -> np.ndarray:
    n = x.size
    E = np.eye(n) * h
    H = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (f(x + E[i] + E[j]) - f(x + E[i] - E[j])
                                 - f(x - E[i] + E[j]) + f(x - E[i] - E[j])) / (4 * h * h)
    return H


@functools.cache
def agq_reference(family: str):
    data = agq_data(family)

    def f(p):
        return reference_deviance(p, data, family)

    start = np.array([np.log(data["y"].mean()), 0.0, np.log(0.5), 0.0])
    opt = optimize.minimize(f, start, method="BFGS")
    assert opt.success, opt.message
    cov = np.linalg.inv(_hessian(f, opt.x, HESS_STEP) / 2.0)  # of (beta, log s, log disp)
    return data, opt, cov


@pytest.mark.parametrize("family", ["negative_binomial", "Gamma"])
def test_agq_optimum_with_dispersion(family):
    data, opt, cov = agq_reference(family)
    assert abs(quad_deviance(opt.x, data, family) - opt.fun) < 1e-9
    res = gb.fit("y ~ x + (1 | g)", data, family=family, link="log", nagq=AGQ_NODES)
    assert res.converged, res.messages
    assert res.method == f"AGQ({AGQ_NODES})"
    ref_loglik = -opt.fun / 2.0
    assert abs(res.loglik - ref_loglik) <= AGQ_LOGLIK_ABS, (res.loglik, ref_loglik)
    se_ref = np.sqrt(np.diag(cov))
    for i, term in enumerate(("(Intercept)", "x")):
        assert abs(res.fixef[term] - opt.x[i]) <= AGQ_EST_REL * max(abs(opt.x[i]), se_ref[i]), (
            term, res.fixef[term], opt.x[i])
        assert abs(res.se[term] - se_ref[i]) <= AGQ_SE_REL * se_ref[i], (
            term, res.se[term], se_ref[i])
    sd = float(res.varcorr["sdcor"].iloc[0])
    s_ref, disp_ref = np.exp(opt.x[2:])
    assert abs(sd - s_ref) <= AGQ_EST_REL * s_ref, (sd, s_ref)
    assert abs(res.sigma - disp_ref) <= AGQ_EST_REL * disp_ref, (res.sigma, disp_ref)
    disp = res.optinfo["dispersion"]
    assert disp["name"] == ("theta" if family == "negative_binomial" else "sigma")
    disp_se_ref = disp_ref * se_ref[3]  # delta method from log dispersion
    assert abs(disp["se"] - disp_se_ref) <= AGQ_SE_REL * disp_se_ref, (disp["se"], disp_se_ref)
    # teeth: the Laplace optimum is visibly off this maximum
    laplace = gb.fit("y ~ x + (1 | g)", data, family=family, link="log")
    assert abs(laplace.loglik - ref_loglik) > 100 * AGQ_LOGLIK_ABS, laplace.loglik
