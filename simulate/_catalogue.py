"""SCENARIOS: the named scenarios studies and tests draw from.

Default sizes are modest (30-60 groups of 2-20) so that one fit takes well under a
second; ``*_large`` variants are for timing studies. Vary any knob with
``dataclasses.replace(SCENARIOS[name], n_groups=...)``.
"""

from __future__ import annotations

from ._icc import icc_to_variance
from ._scenario import Scenario

_G = dict(n_groups=40, group_size=10)

SCENARIOS: dict[str, Scenario] = {
    # --- Gaussian (lmer) ---
    "gaussian_intercept": Scenario(
        "gaussian", **_G, intercept=1.0, beta_x=0.5, beta_z=0.3,
        var_intercept=icc_to_variance(0.3, sigma=1.0), sigma=1.0),
    "gaussian_slopes": Scenario(
        "gaussian", **_G, intercept=1.0, beta_x=0.5, var_intercept=0.6, var_slope=0.2,
        cor_slope=0.4, sigma=1.0),
    "gaussian_nested": Scenario(
        "gaussian", n_groups=48, group_size=8, design="nested", n_groups2=12, var_group2=0.3,
        intercept=1.0, beta_x=0.5, var_intercept=0.4, sigma=1.0),
    "gaussian_crossed": Scenario(
        "gaussian", **_G, design="crossed", n_groups2=30, var_group2=0.3, intercept=1.0,
        beta_x=0.5, var_intercept=0.5, sigma=1.0),
    "gaussian_small_groups": Scenario(
        "gaussian", n_groups=60, group_size=2, intercept=1.0, beta_x=0.5, beta_z=0.3,
        var_intercept=0.5, sigma=1.0),
    "gaussian_unbalanced": Scenario(
        "gaussian", n_groups=50, group_size=8, size_dist="geometric", min_group_size=1,
        intercept=1.0, beta_x=0.5, beta_z=0.3, var_intercept=0.5, sigma=1.0),
    "gaussian_smooth": Scenario(
        "gaussian", **_G, smooth="sin", intercept=1.0, beta_x=0.0, var_intercept=0.4,
        sigma=0.5),
    "gaussian_slopes_large": Scenario(
        "gaussian", n_groups=300, group_size=20, intercept=1.0, beta_x=0.5, beta_z=0.3,
        var_intercept=0.6, var_slope=0.2, cor_slope=0.4, sigma=1.0),
    # --- binomial (glmer) ---
    "binomial_binary": Scenario(
        "binomial", n_groups=50, group_size=10, intercept=-0.5, beta_x=0.8, beta_z=0.4,
        var_intercept=icc_to_variance(0.2, "binomial")),
    "binomial_binary_probit": Scenario(
        "binomial", "probit", n_groups=50, group_size=10, intercept=-0.3, beta_x=0.5,
        var_intercept=icc_to_variance(0.2, "binomial", "probit")),
    "binomial_small_groups": Scenario(
        "binomial", n_groups=60, group_size=3, intercept=0.0, beta_x=0.8,
        var_intercept=1.0),
    "binomial_slopes": Scenario(
        "binomial", n_groups=50, group_size=20, intercept=-0.5, beta_x=0.8, var_intercept=1.0,
        var_slope=0.3, cor_slope=-0.3),
    "binomial_trials": Scenario(
        "binomial", n_groups=40, group_size=5, trials=10, intercept=-1.5, beta_x=0.5,
        beta_z=0.3, var_intercept=0.5),
    "binomial_trials_crossed": Scenario(
        "binomial", n_groups=40, group_size=5, design="crossed", n_groups2=20,
        var_group2=0.3, trials=5, intercept=-1.0, beta_x=0.5, var_intercept=0.5),
    "binomial_trials_olre": Scenario(
        "binomial", n_groups=40, group_size=5, trials=10, var_obs=0.3, intercept=-1.0,
        beta_x=0.5, var_intercept=0.5),
    "binomial_binary_large": Scenario(
        "binomial", n_groups=500, group_size=20, intercept=-0.5, beta_x=0.8, beta_z=0.4,
        var_intercept=1.0, var_slope=0.3, cor_slope=-0.3),
    # --- Poisson (glmer) ---
    "poisson_intercept": Scenario(
        "poisson", **_G, intercept=1.0, beta_x=0.3, beta_z=0.2, var_intercept=0.3),
    "poisson_slopes": Scenario(
        "poisson", **_G, intercept=1.0, beta_x=0.3, var_intercept=0.3, var_slope=0.1,
        cor_slope=0.2),
    "poisson_nested": Scenario(
        "poisson", n_groups=48, group_size=8, design="nested", n_groups2=12, var_group2=0.2,
        intercept=1.0, beta_x=0.3, var_intercept=0.3),
    "poisson_crossed": Scenario(
        "poisson", **_G, design="crossed", n_groups2=25, var_group2=0.2, intercept=1.0,
        beta_x=0.3, var_intercept=0.3),
    "poisson_olre": Scenario(
        "poisson", **_G, var_obs=0.25, intercept=1.0, beta_x=0.3, var_intercept=0.3),
    "poisson_smooth": Scenario(
        "poisson", **_G, smooth="sin", intercept=0.5, beta_x=0.0, var_intercept=0.3),
    "poisson_crossed_large": Scenario(
        "poisson", n_groups=500, group_size=40, design="crossed", n_groups2=100,
        var_group2=0.2, intercept=1.0, beta_x=0.3, var_intercept=0.3),
    # --- negative binomial (glmer.nb / glmmTMB nbinom2) ---
    "negbin_intercept": Scenario(
        "negative_binomial", **_G, nb_theta=2.0, intercept=1.0, beta_x=0.3, beta_z=0.2,
        var_intercept=0.3),
    "negbin_unbalanced": Scenario(
        "negative_binomial", n_groups=50, group_size=8, size_dist="uniform",
        min_group_size=2, nb_theta=1.5, intercept=1.5, beta_x=0.3, var_intercept=0.3),
    "negbin_crossed": Scenario(
        "negative_binomial", **_G, design="crossed", n_groups2=25, var_group2=0.2,
        nb_theta=2.0, intercept=1.0, beta_x=0.3, var_intercept=0.3),
    # --- NB1 (glmmTMB nbinom1: Var = mu (1 + phi)) ---
    "nbinom1_crossed": Scenario(
        "nbinom1", **_G, design="crossed", n_groups2=25, var_group2=0.2, nb_phi=1.5,
        intercept=1.0, beta_x=0.3, var_intercept=0.3),
    # --- Gamma (glmmTMB / glmer Gamma; CV = 1 / sqrt(shape)) ---
    "gamma_log": Scenario(
        "Gamma", "log", **_G, gamma_shape=2.0, intercept=1.0, beta_x=0.5, beta_z=0.3,
        var_intercept=0.3),
    # --- glmmTMB's families (issue 26) ---
    "beta_intercept": Scenario(
        "beta", n_groups=40, group_size=20, beta_phi=8.0, intercept=-0.5, beta_x=0.6,
        var_intercept=0.3),
    "beta_slopes": Scenario(
        "beta", n_groups=40, group_size=20, beta_phi=8.0, intercept=-0.5, beta_x=0.6,
        var_intercept=0.3, var_slope=0.1, cor_slope=0.3),
    "ordbeta_intercept": Scenario(
        "ordbeta", n_groups=40, group_size=20, beta_phi=6.0, ob_cuts=(-2.0, 2.0),
        intercept=-0.2, beta_x=0.6, var_intercept=0.25),
    "betabinomial_intercept": Scenario(
        "betabinomial", **_G, trials=12, beta_phi=5.0, intercept=-0.5, beta_x=0.5,
        var_intercept=0.3),
    "truncated_poisson_intercept": Scenario(
        "truncated_poisson", **_G, intercept=0.8, beta_x=0.4, var_intercept=0.2),
    "truncated_nbinom2_intercept": Scenario(
        "truncated_nbinom2", **_G, nb_theta=2.0, intercept=1.0, beta_x=0.4,
        var_intercept=0.2),
    "truncated_nbinom1_intercept": Scenario(
        "truncated_nbinom1", **_G, nb_phi=1.5, intercept=1.0, beta_x=0.4, var_intercept=0.2),
    "negbin_dispformula": Scenario(
        "negative_binomial", **_G, nb_theta=2.0, disp_slope=0.6, intercept=1.0, beta_x=0.3,
        var_intercept=0.3),
    "gaussian_dispformula": Scenario(
        "gaussian", **_G, sigma=1.0, disp_slope=0.8, intercept=1.0, beta_x=0.5,
        var_intercept=0.4),
    "t_intercept": Scenario(
        "t", n_groups=40, group_size=15, sigma=0.7, t_df=4.0, intercept=1.0, beta_x=0.5,
        var_intercept=0.25),
    "tweedie_intercept": Scenario(
        "tweedie", n_groups=40, group_size=20, tw_phi=1.2, tw_power=1.6, intercept=0.5,
        beta_x=0.4, var_intercept=0.15),
    "tweedie_slopes": Scenario(
        "tweedie", n_groups=40, group_size=20, tw_phi=1.2, tw_power=1.6, intercept=0.5,
        beta_x=0.4, var_intercept=0.15, var_slope=0.05, cor_slope=0.2),
    "compois_intercept": Scenario(
        "compois", **_G, cp_phi=0.7, intercept=1.0, beta_x=0.4, var_intercept=0.2),
    "genpois_intercept": Scenario(
        "genpois", **_G, gp_phi=2.0, intercept=1.0, beta_x=0.4, var_intercept=0.2),
    # --- ordinal (clmm) ---
    "ordinal_logit": Scenario(
        "ordinal", "logit", **_G, n_categories=4, thresholds=(-1.0, 0.2, 1.5), beta_x=0.8,
        beta_z=0.4, var_intercept=icc_to_variance(0.2, "ordinal", "logit")),
    "ordinal_probit": Scenario(
        "ordinal", "probit", **_G, n_categories=5, thresholds=(-1.2, -0.4, 0.3, 1.1),
        beta_x=0.5, var_intercept=icc_to_variance(0.2, "ordinal", "probit")),
    "ordinal_slopes": Scenario(
        "ordinal", "logit", n_groups=50, group_size=12, n_categories=3,
        thresholds=(-0.5, 1.0), beta_x=0.8, var_intercept=0.8, var_slope=0.3,
        cor_slope=0.3),
    # --- multinomial (mgcv multinom, independent random intercepts) ---
    "multinomial_intercept": Scenario(
        "multinomial", **_G, n_categories=3, intercept=(-0.5, 0.3), beta_x=(0.8, -0.4),
        var_intercept=0.5),
    "multinomial_4cat": Scenario(
        "multinomial", n_groups=50, group_size=12, n_categories=4,
        intercept=(0.2, -0.3, -0.8), beta_x=(0.5, -0.5, 1.0), beta_z=(0.3, 0.0, -0.3),
        var_intercept=0.4),
}
