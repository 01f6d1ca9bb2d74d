"""R recovers the simulated truth: one large draw per scenario, one reference fit.

Fixed effects and ordinal thresholds must lie within Z_TOL = 4 of R's own Wald
standard errors of the truth. Variance components have no standard error in the
FitRecord, so they are held to Z_TOL *approximate* SEs from the balanced one-way
formula ``SE(tau^2) ~ sqrt(2 / m) (tau^2 + noise)`` (m levels; noise = the
variance of a level mean around its effect: the working residual variance
``1 / mean Fisher information for eta`` over the level's observations plus the
other random terms that vary within the level), and correlations to
``(1 - rho^2) / sqrt(m)`` inflated by the same noise ratios. These are rough: over
8-30 replicate draws of seven scenarios (Gaussian slopes and nested, binomial
crossed and slopes, Poisson OLRE, ordinal probit, multinomial) the approximate SE
was 0.73-1.15 times the spread of R's estimates, which a 4-SE band absorbs; a fixed relative
band (say 25%) would be far too tight for multinomial (m = 60, relative SE ~0.4)
and needlessly loose for Gaussian (relative SE ~0.08).

Draw sizes keep the whole file near a minute of R time on an idle machine (the
``*_large`` scenarios are drawn smaller here: their model is what is checked); AGQ
(nagq = 5) is used where lme4 allows it so that Laplace's small-cluster bias for
binary data does not masquerade as a generator bug.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from simulate import SCENARIOS, SMOOTHS, generate
from simulate._links import LINKS

Z_TOL = 4.0
SEED = 20240611
TIMEOUT = 600


@dataclasses.dataclass(frozen=True)
class Plan:
    engine: str
    knobs: dict
    nagq: int = 1


PLANS = {
    "gaussian_intercept": Plan("lme4", dict(n_groups=400)),
    "gaussian_slopes": Plan("lme4", dict(n_groups=400)),
    "gaussian_nested": Plan("lme4", dict(n_groups=400, n_groups2=100)),
    "gaussian_crossed": Plan("lme4", dict(n_groups=300, n_groups2=150)),
    "gaussian_small_groups": Plan("lme4", dict(n_groups=1000)),
    "gaussian_unbalanced": Plan("lme4", dict(n_groups=400)),
    "gaussian_smooth": Plan("gamm4", dict(n_groups=300)),
    "poisson_smooth": Plan("gamm4", dict(n_groups=300)),
    "gaussian_slopes_large": Plan("lme4", {}),
    "binomial_binary": Plan("lme4", dict(n_groups=400), nagq=5),
    "binomial_binary_probit": Plan("lme4", dict(n_groups=400), nagq=5),
    "binomial_small_groups": Plan("lme4", dict(n_groups=1000), nagq=5),
    "binomial_slopes": Plan("lme4", dict(n_groups=200)),
    "binomial_trials": Plan("lme4", dict(n_groups=300), nagq=5),
    "binomial_trials_crossed": Plan("lme4", dict(n_groups=300, n_groups2=100)),
    "binomial_trials_olre": Plan("lme4", dict(n_groups=300)),
    "binomial_binary_large": Plan("lme4", dict(n_groups=200)),
    "poisson_intercept": Plan("lme4", dict(n_groups=400), nagq=5),
    "poisson_slopes": Plan("lme4", dict(n_groups=300)),
    "poisson_nested": Plan("lme4", dict(n_groups=400, n_groups2=100)),
    "poisson_crossed": Plan("lme4", dict(n_groups=300, n_groups2=150)),
    "poisson_olre": Plan("lme4", dict(n_groups=300)),
    "poisson_crossed_large": Plan("lme4", dict(n_groups=150, n_groups2=50)),
    "negbin_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "negbin_unbalanced": Plan("glmmTMB", dict(n_groups=300)),
    "negbin_crossed": Plan("glmmTMB", dict(n_groups=300, n_groups2=150)),
    "nbinom1_crossed": Plan("glmmTMB", dict(n_groups=300, n_groups2=150)),  # lme4 has no NB1
    # glmmTMB: glmer's Gamma fit is not maximum likelihood (lme4-gamma-estimates)
    "gamma_log": Plan("glmmTMB", dict(n_groups=300)),
    "ordinal_logit": Plan("ordinal", dict(n_groups=200)),
    "ordinal_probit": Plan("ordinal", dict(n_groups=200)),
    "ordinal_slopes": Plan("ordinal", dict(n_groups=150)),
    "multinomial_intercept": Plan("mgcv", dict(n_groups=100)),
    "multinomial_4cat": Plan("mgcv", dict(n_groups=60)),
    # glmmTMB's families (issue 26)
    "beta_intercept": Plan("glmmTMB", dict(n_groups=200)),
    "beta_slopes": Plan("glmmTMB", dict(n_groups=200)),
    "truncated_poisson_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "truncated_nbinom2_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "truncated_nbinom1_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "genpois_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "betabinomial_intercept": Plan("glmmTMB", dict(n_groups=300)),
    "ordbeta_intercept": Plan("glmmTMB", dict(n_groups=200)),
    "compois_intercept": Plan("glmmTMB", dict(n_groups=60)),  # glmmTMB takes 20 s at 500 rows
    "t_intercept": Plan("glmmTMB", dict(n_groups=200)),
    "tweedie_intercept": Plan("glmmTMB", dict(n_groups=150)),
    "tweedie_slopes": Plan("glmmTMB", dict(n_groups=150)),
    "negbin_dispformula": Plan("glmmTMB", dict(n_groups=300)),
    "gaussian_dispformula": Plan("glmmTMB", dict(n_groups=300)),
}


def test_every_scenario_has_a_recovery_plan():
    assert set(PLANS) == set(SCENARIOS)


# ------------------------------------------------------------ approximate SEs


def _derivative(f, t: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return (f(t + h) - f(t - h)) / (2 * h)


def working_variance(sim) -> np.ndarray:
    """``1 / mean I(eta)``, I the Fisher information for eta of one observation;
    one value per linear predictor (per non-baseline category for multinomial)."""
    s, eta = sim.scenario, sim.eta
    if s.family == "gaussian":
        return np.array([s.sigma**2])
    if s.family == "binomial":
        link = LINKS[s.resolved_link]
        p = link.linkinv(eta)
        info = s.trials * _derivative(link.linkinv, eta) ** 2 / (p * (1 - p))
    elif s.family == "poisson":
        info = np.exp(eta)
    elif s.family == "negative_binomial":
        mu = np.exp(eta)
        info = mu * s.nb_theta / (mu + s.nb_theta)
    elif s.family == "nbinom1":  # mu^2 / Var, ignoring that the size mu / phi moves with mu
        info = np.exp(eta) / (1 + s.nb_phi)
    elif s.family == "Gamma":  # log link: mu^2 / Var = shape
        info = np.full(eta.shape, s.gamma_shape)
    elif s.family == "beta":  # logit link: mu'(eta)^2 phi^2 (trigamma(a) + trigamma(b))
        mu = special.expit(eta)
        a, b = mu * s.beta_phi, (1 - mu) * s.beta_phi
        info = (mu * (1 - mu) * s.beta_phi) ** 2 * (special.polygamma(1, a)
                                                     + special.polygamma(1, b))
    elif s.family == "ordbeta":  # the continuous part's, as beta (rough)
        mu = special.expit(eta)
        a, b = mu * s.beta_phi, (1 - mu) * s.beta_phi
        info = (mu * (1 - mu) * s.beta_phi) ** 2 * (special.polygamma(1, a)
                                                     + special.polygamma(1, b))
    elif s.family == "betabinomial":  # the binomial's, over the overdispersion factor
        p = special.expit(eta)
        info = (s.trials * p * (1 - p)) / (1 + (s.trials - 1) / (s.beta_phi + 1))
    elif s.family == "t":  # Fisher information of a t location: (df + 1) / ((df + 3) s^2)
        info = np.full(eta.shape, (s.t_df + 1) / ((s.t_df + 3) * s.sigma**2))
    elif s.family == "tweedie":  # log link: mu^2 / Var = mu^(2 - p) / phi
        info = np.exp(eta) ** (2 - s.tw_power) / s.tw_phi
    elif s.family.startswith("truncated_") or s.family in ("genpois", "compois"):
        # mu^2 / Var of the untruncated parent, ignoring the truncation: rough, as above
        mu = np.exp(eta)
        info = {"truncated_poisson": mu, "truncated_nbinom2": mu * s.nb_theta / (mu + s.nb_theta),
                "truncated_nbinom1": mu / (1 + s.nb_phi), "genpois": mu / s.gp_phi,
                "compois": mu / s.cp_phi}[s.family]
    elif s.family == "ordinal":
        F = LINKS[s.resolved_link].cdf
        th = np.array([-np.inf, *s.resolved_thresholds, np.inf])[None, :] - eta[:, None]
        dens = np.where(np.isfinite(th), _derivative(F, np.where(np.isfinite(th), th, 0)), 0)
        info = np.sum(np.diff(dens, axis=1) ** 2 / np.diff(F(th), axis=1), axis=1)
    else:  # multinomial: the diagonal of the information, p_k (1 - p_k)
        p = special.softmax(np.column_stack([np.zeros(len(eta)), eta]), axis=1)[:, 1:]
        return 1.0 / np.mean(p * (1 - p), axis=0)
    return np.array([1.0 / np.mean(info)])


def _labels(data: pd.DataFrame, grp: str) -> pd.Series:
    if grp == "g:c":
        return data["g"].astype(str) + ":" + data["c"].astype(str)
    return data[grp].astype(str)


def _noise(sim, row: dict, w: float) -> tuple[float, float]:
    """(levels m, variance of a level mean around its effect) for a variance row."""
    d = sim.data
    labels = _labels(d, row["grp"])
    m = labels.nunique()
    nbar = len(d) / m
    noise = w / nbar
    if sim.family == "multinomial":
        return m, noise
    for other in sim.truth["varcorr"]:
        if other is row or other["var2"] is not None or other["grp"] == "Residual":
            continue
        if other["grp"] == row["grp"]:  # intercept <-> slope of the same term
            noise += other["vcov"] / nbar
            continue
        per_level = pd.DataFrame({"t": labels, "o": _labels(d, other["grp"])}) \
            .groupby("t")["o"].nunique().mean()
        if per_level > 1:  # terms this one is nested in are constant within a level
            noise += other["vcov"] / per_level
    return m, noise


def variance_rows(sim, rec) -> list[tuple[str, float, float, float]]:
    """(what, estimate, truth, approximate SE) for every varcorr row and dispersion."""
    got = {(r["grp"], r["var1"], r["var2"]): r for r in rec["varcorr"]}
    w = working_variance(sim)
    category = {f"{c}~(Intercept)": k for k, c in enumerate(sim.data["y"].cat.categories[1:])} \
        if sim.family == "multinomial" else {}
    out = []
    for row in sim.truth["varcorr"]:
        key = (row["grp"], row["var1"], row["var2"])
        assert key in got, f"R has no varcorr row {key}; it has {list(got)}"
        est = got[key]
        what = "/".join(str(k) for k in key if k is not None)
        if row["grp"] == "Residual":
            se = row["vcov"] * np.sqrt(2 / len(sim.data))
            out.append((what, est["vcov"], row["vcov"], se))
        elif row["var2"] is None:
            m, noise = _noise(sim, row, w[category.get(row["var1"], 0)])
            out.append((what, est["vcov"], row["vcov"], np.sqrt(2 / m) * (row["vcov"] + noise)))
        else:
            rho = row["sdcor"]
            inflation = 1.0
            for var1 in (row["var1"], row["var2"]):
                vrow = next(r for r in sim.truth["varcorr"]
                            if r["grp"] == row["grp"] and r["var1"] == var1 and r["var2"] is None)
                m, noise = _noise(sim, vrow, w[0])
                inflation *= 1 + noise / vrow["vcov"]
            out.append((f"cor {what}", est["sdcor"], rho,
                        (1 - rho**2) / np.sqrt(m) * np.sqrt(inflation)))
    if sim.family in DISPERSION and "dispersion" in sim.truth:
        name, _ = DISPERSION[sim.family]
        out.append((name, rec["sigma"], sim.truth["dispersion"], dispersion_se(sim)))
    return out


# family -> (name, log density of y given mu and the dispersion as glmmTMB's sigma())
DISPERSION = {
    "negative_binomial": ("theta", lambda y, mu, th: stats.nbinom.logpmf(y, th, th / (th + mu))),
    "nbinom1": ("phi", lambda y, mu, phi: stats.nbinom.logpmf(y, mu / phi, 1 / (1 + phi))),
    "Gamma": ("sigma (CV)",
              lambda y, mu, cv: stats.gamma.logpdf(y, 1 / cv**2, scale=mu * cv**2)),
    "beta": ("phi (precision)", lambda y, mu, phi: stats.beta.logpdf(y, mu * phi, (1 - mu) * phi)),
    "truncated_nbinom2": ("theta", lambda y, mu, th: _zero_truncated(
        stats.nbinom(th, th / (th + mu)), y)),
    "truncated_nbinom1": ("phi", lambda y, mu, phi: _zero_truncated(
        stats.nbinom(mu / phi, 1 / (1 + phi)), y)),
    "genpois": ("phi", lambda y, mu, phi: _genpois_logpmf(y, mu, phi)),
    "betabinomial": ("phi (precision)", lambda y, mu, phi: stats.betabinom.logpmf(
        y, 12, mu * phi, (1 - mu) * phi)),
    "t": ("sigma (scale)", lambda y, mu, sd: stats.t.logpdf(y, 4.0, loc=mu, scale=sd)),
    "tweedie": ("phi", lambda y, mu, phi: _tweedie_logpdf(y, mu, phi, 1.6)),
}


def _tweedie_logpdf(y: np.ndarray, mu: np.ndarray, phi: float, p: float) -> np.ndarray:
    """The compound Poisson-gamma density summed over the number of jumps n (not
    Dunn & Smyth's series the engine uses): P(0) = exp(-lam), and for y > 0
    sum_n Pois(n; lam) Gamma(y; n a, scale), lam = mu^(2-p) / (phi (2-p)),
    a = (2-p) / (p-1), scale = phi (p-1) mu^(p-1)."""
    lam = mu ** (2 - p) / (phi * (2 - p))
    a, scale = (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
    n = np.arange(1, 400)[:, None]
    pos = (stats.poisson.logpmf(n, lam) + stats.gamma.logpdf(np.maximum(y, 1e-300), n * a,
                                                              scale=scale))
    return np.where(y > 0, special.logsumexp(pos, axis=0), -lam)


def _zero_truncated(dist, y: np.ndarray) -> np.ndarray:
    return dist.logpmf(y) - np.log1p(-dist.pmf(0))


def _genpois_logpmf(y: np.ndarray, mu: np.ndarray, phi: float) -> np.ndarray:
    """Consul's P(y) = t (t + l y)^(y - 1) exp(-t - l y) / y!, t = mu / sqrt(phi),
    l = 1 - 1 / sqrt(phi) (glmmTMB's genpois)."""
    t, lam = mu / np.sqrt(phi), 1 - 1 / np.sqrt(phi)
    return np.log(t) + (y - 1) * np.log(t + lam * y) - t - lam * y - special.gammaln(y + 1)


def dispersion_se(sim) -> float:
    """1 / sqrt(observed information for the dispersion at the truth, mu known):
    the closed form for NB2, a central second difference otherwise."""
    if sim.family == "negative_binomial":
        return nb_theta_se(sim)
    logf = DISPERSION[sim.family][1]
    mu = LINKS[sim.scenario.resolved_link].linkinv(sim.eta)
    y, v = sim.data["y"].to_numpy(float), sim.truth["dispersion"]
    h = 1e-3 * v
    d2 = (logf(y, mu, v + h).sum() - 2 * logf(y, mu, v).sum() + logf(y, mu, v - h).sum()) / h**2
    return float(1 / np.sqrt(-d2))


def nb_theta_se(sim) -> float:
    """1 / sqrt(observed information for theta at the truth, mu known)."""
    y, mu, th = sim.data["y"].to_numpy(float), np.exp(sim.eta), sim.truth["dispersion"]
    d2 = (special.polygamma(1, y + th) - special.polygamma(1, th) + 1 / th
          - 2 / (mu + th) + (y + th) / (mu + th) ** 2)
    return float(1 / np.sqrt(-d2.sum()))


def fixed_rows(sim, rec) -> list[tuple[str, float, float, float]]:
    """(name, estimate, truth, R's SE) for fixed effects and thresholds."""
    truth = dict(sim.truth["fixef"])
    truth.update(sim.truth.get("thresholds", {}))
    est = {**rec["fixef"], **rec["thresholds"]}
    assert set(truth) <= set(est), f"R names {sorted(est)}; truth names {sorted(truth)}"
    rows = [(k, est[k], v, rec["se"][k]) for k, v in truth.items()]
    disp = sim.truth.get("fixef_disp", {})  # the dispersion model, on glmmTMB's scale
    assert set(disp) <= set(rec["fixef_disp"]), rec["fixef_disp"]
    return rows + [(f"disp~{k}", rec["fixef_disp"][k], v, rec["se_disp"][k])
                   for k, v in disp.items()]


def smooth_rmse(sim, rec) -> tuple[float, float]:
    """RMSE of R's fitted smooth against the truth (both centred over the data) on
    R's grid, and the bound 3 sigma sqrt(edf / n): the mean pointwise variance of a
    linear smoother is at most sigma^2 edf / n (sigma^2 the working variance of eta
    for a non-Gaussian family)."""
    (sm,) = rec["smooths"]
    f = SMOOTHS[sim.truth["smooth"]["name"]]
    grid = np.asarray(sm["grid"])
    truth = f(grid) - f(sim.data["x"].to_numpy()).mean()
    rmse = float(np.sqrt(np.mean((np.asarray(sm["fit"]) - truth) ** 2)))
    sigma = (sim.scenario.sigma if sim.scenario.family == "gaussian"
             else float(np.sqrt(working_variance(sim)[0])))
    return rmse, 3 * sigma * np.sqrt(sm["edf"] / len(sim.data))


# ------------------------------------------------------------------ the test


@pytest.mark.r
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANS))
def test_r_recovers_the_truth(name):
    from reference_r import fit_reference

    plan = PLANS[name]
    sim = generate(dataclasses.replace(SCENARIOS[name], **plan.knobs),
                   np.random.default_rng(SEED))
    extra = {} if sim.dispformula is None else {"dispformula": sim.dispformula}
    rec = fit_reference(plan.engine, sim.formula, sim.data, family=sim.family,
                        link=sim.link, nagq=plan.nagq, timeout=TIMEOUT, **extra)
    rows = fixed_rows(sim, rec) + variance_rows(sim, rec)
    lines = [f"{name} [{plan.engine}, n={len(sim.data)}, R {rec['time_s']:.2f}s]"]
    lines += [f"  {what:22s} est {e:+.4f} truth {t:+.4f} se {se:.4f} z {(e - t) / se:+.2f}"
              for what, e, t, se in rows]
    if sim.scenario.smooth is not None:
        rmse, bound = smooth_rmse(sim, rec)
        lines.append(f"  smooth rmse {rmse:.4f} (bound {bound:.4f})")
        assert rmse < bound, "\n".join(lines)
    report = "\n".join(lines)
    print(report)
    bad = [what for what, e, t, se in rows if not abs(e - t) < Z_TOL * se]
    assert not bad, f"beyond {Z_TOL} SE: {bad}\n{report}\nR messages: {rec['messages']}"
