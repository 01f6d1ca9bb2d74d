"""Known R-side conventions and discrepancies that parity checks must know.

One dict per finding: ``id``, ``engine``, ``condition`` (when it applies),
``quantity`` (record fields affected), ``description``, ``evidence`` (the R code
and what it printed here: R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, ordinal
2022.11-16, mgcv 1.8-41, gamm4 0.2-6) and ``measured`` (the numbers, for checks).
A parity report should cite the ``id`` rather than loosen a tolerance.
See ``CONVENTIONS.md`` for the prose.
"""

from __future__ import annotations

__all__ = ["KNOWN_DISCREPANCIES", "lookup"]

_CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

KNOWN_DISCREPANCIES: list[dict] = [
    {
        "id": "lme4-agq-binomial-loglik",
        "engine": "lme4",
        "condition": "glmer, nAGQ > 1, binomial with cbind() counts (size > 1)",
        "quantity": ["loglik", "aic", "bic"],
        "description": (
            "At nAGQ > 1 logLik() leaves out the saturated log-likelihood "
            "sum(dbinom(k, n, k/n, log = TRUE)), so it jumps by about minus that "
            "constant relative to the Laplace value; deviance() stays comparable. "
            "Bernoulli (0/1) responses have a zero saturated term and no jump."
        ),
        "evidence": (
            f"glmer({_CBPP}, cbpp, binomial, nAGQ = q): logLik -92.0266 (q=1), -50.0570 (2), "
            "-50.0057 (5), -50.0050 (25); deviance 73.474, 73.486, 73.376, 73.373. "
            "glmmTMB (Laplace) logLik -92.0263. Saturated loglik -41.9784; "
            "shift 42.0216 = 41.9784 + 0.0432 (the 0/1-expanded cbpp moves by 0.043 "
            "from q=1 to q=25: -277.5022 -> -277.4590)."
        ),
        "measured": {
            "loglik_nagq1": -92.0265664,
            "loglik_nagq25": -50.0050153,
            "loglik_shift": 42.02155,
            "saturated_loglik": -41.97835,
            "deviance_nagq1": 73.4742836,
            "deviance_nagq25": 73.3730025,
        },
    },
    {
        "id": "lme4-agq-poisson-loglik",
        "engine": "lme4",
        "condition": "glmer, nAGQ > 1, poisson",
        "quantity": ["loglik", "aic", "bic"],
        "description": (
            "Same convention as lme4-agq-binomial-loglik: at nAGQ > 1 logLik() omits "
            "the saturated Poisson log-likelihood sum(dpois(y, y, log = TRUE))."
        ),
        "evidence": (
            "glmer(TICKS ~ YEAR + (1 | LOCATION), grouseticks, poisson): logLik "
            "-1149.1457 (nAGQ=1), -683.3906 (nAGQ=25); deviance 1125.549, 1125.412; "
            "glmmTMB -1149.144; saturated loglik -465.4993, shift 465.7551."
        ),
        "measured": {"loglik_shift": 465.7551, "saturated_loglik": -465.4993},
    },
    {
        "id": "lme4-noncanonical-laplace",
        "engine": "lme4",
        "condition": "glmer / glmer.nb with a non-canonical link (probit, cloglog; NB log)",
        "quantity": ["loglik", "fixef", "varcorr", "sigma"],
        "description": (
            "lme4's and glmmTMB's Laplace approximations agree to ~3e-4 in loglik for "
            "canonical links but differ by ~0.04 for non-canonical ones (different "
            "optima, not just tolerances). lme4 evaluated at glmmTMB's NB size still "
            "gives its own value. Likely cause: lme4's PIRLS Laplace uses the "
            "expected (Fisher) weights, glmmTMB the exact Hessian. Compare a native "
            "Laplace fit with the engine whose approximation it implements."
        ),
        "evidence": (
            f"{_CBPP}: logit glmer -92.02657 / glmmTMB -92.02628; probit -92.62124 / "
            "-92.58334; cloglog -91.80206 / -91.75800. grouseticks TICKS ~ YEAR + "
            "(1 | LOCATION): glmer.nb -921.4419 (size 2.0492) / glmmTMB nbinom2 "
            "-921.2633 (size 2.0426); glmer with negative.binomial(2.042564) -921.4424."
        ),
        "measured": {
            "probit_loglik_lme4": -92.62124,
            "probit_loglik_glmmTMB": -92.58334,
            "nb_loglik_lme4": -921.4419,
            "nb_loglik_glmmTMB": -921.2633,
        },
    },
    {
        "id": "lme4-laplace-pirls-tolerance",
        "engine": "lme4",
        "condition": "glmer, nAGQ = 1, default glmerControl(tolPwrss = 1e-7)",
        "quantity": ["loglik", "deviance", "aic", "bic"],
        "description": (
            "lme4's reported -2 logLik differs from the Laplace deviance recomputed "
            "at its own optimum (beta, theta, conditional modes u) by up to ~6e-4: "
            "consistent with log|L|^2 taken from a PIRLS iterate that is not fully "
            "converged. With tolPwrss = 1e-13 the cbpp gap is 1e-8. Compare a native "
            "Laplace deviance with lme4's to ~1e-3 absolute, or refit lme4 tightly."
        ),
        "evidence": (
            f"glmer({_CBPP}): -2 logLik 184.05313278, recomputed "
            "-2 sum log f(y|u) + |u|^2 + log|L|^2 = 184.05257242 (gap 5.6e-4); with "
            "tolPwrss = 1e-13: 184.05256375 vs 184.05256374. grouseticks "
            "TICKS ~ YEAR + scale(HEIGHT) + (1|BROOD) + (1|LOCATION), poisson: gap "
            "6.2e-6 at either tolerance."
        ),
        "measured": {
            "cbpp_gap_default": 5.6e-4,
            "cbpp_gap_tight": 1.35e-8,
            "grouseticks_gap": 6.2e-6,
        },
    },
    {
        "id": "mgcv-loglik-is-conditional",
        "engine": "mgcv",
        "condition": "gam with bs='re' random effects or penalized smooths",
        "quantity": ["loglik", "df", "aic", "bic"],
        "description": (
            "logLik(gam) is the log-likelihood at the penalized estimates (random "
            "effects as coefficients) with df = effective degrees of freedom; it is "
            "not the marginal likelihood. The marginal (RE)ML value is -m$gcv.ubre, "
            "which for Gaussian models equals lme4's REML/ML logLik. The record "
            "carries logLik(); compare mgcv to lme4 by variance components."
        ),
        "evidence": (
            "sleepstudy Reaction ~ Days + (Days || Subject): gam logLik -822.8076 "
            "(df 31.2009), -gcv.ubre -871.8346 (REML) / -876.0016 (ML); lmer "
            "logLik -871.8346 (REML) / -876.0016 (ML)."
        ),
        "measured": {"gam_loglik": -822.8076, "reml_score": -871.8346, "lmer_reml": -871.8346},
    },
    {
        "id": "mgcv-re-nongaussian-estimates",
        "engine": "mgcv",
        "condition": "gam with bs='re' for binomial / poisson / NB",
        "quantity": ["fixef", "varcorr"],
        "description": (
            "For non-Gaussian responses gam's REML (Laplace on the penalized IRLS, "
            "PQL-like) is not glmer's marginal ML: estimates differ by several percent."
        ),
        "evidence": (
            f"{_CBPP} as gam(... + s(herd, bs = 're'), binomial, REML): intercept "
            "-1.3670, sd(herd) 0.6819; glmer intercept -1.3983, sd 0.6421."
        ),
        "measured": {"gam_sd": 0.6818673, "glmer_sd": 0.6420699},
    },
    {
        "id": "mgcv-re-gaussian-variance-components",
        "engine": "mgcv",
        "condition": "gaussian gam, REML, bs='re' from (1|g) or (x||g)",
        "quantity": ["varcorr"],
        "description": (
            "Equal to lmer's REML variance components to ~1e-5 relative; the "
            "Residual row comes from gam.vcomp's 'scale', sigma from sqrt(m$scale) "
            "(they differ in the 6th digit)."
        ),
        "evidence": (
            "(Days || Subject): gam.vcomp sd 25.051370, 5.988153, scale 25.565254; "
            "lmer 25.051328, 5.988187, 25.565279; sqrt(m$scale) 25.56528."
        ),
        "measured": {"gam_sd": [25.05137, 5.988153], "lmer_sd": [25.051328, 5.988187]},
    },
    {
        "id": "gamm4-loglik-from-mer",
        "engine": "gamm4",
        "condition": "every gamm4 fit",
        "quantity": ["loglik", "df", "aic", "bic", "deviance"],
        "description": (
            "logLik(m$gam) is empty; the record uses logLik(m$mer), the (RE)ML "
            "log-likelihood of the mixed-model form (smooth penalties as the random "
            "groups Xr, dropped from varcorr/ngroups). It equals -gcv.ubre of the "
            "same model fitted by gam(method = 'REML')."
        ),
        "evidence": (
            "y ~ s(x) + (1 | g), n = 200 simulated: logLik(m$mer) -85.84549 (df 5), "
            "gam(y ~ s(x) + s(g, bs = 're'), REML): -gcv.ubre -85.84549, "
            "logLik -37.5094; edf of s(x) 7.199038 (gamm4) vs 7.199027 (gam)."
        ),
        "measured": {"mer_loglik": -85.84549, "gam_reml_score": -85.84549},
    },
    {
        "id": "glmmTMB-no-deviance",
        "engine": "glmmTMB",
        "condition": "every glmmTMB fit (1.1.5)",
        "quantity": ["deviance", "theta"],
        "description": (
            "deviance() returns NULL: the record has deviance None. glmmTMB has no "
            "lme4 theta; the record has theta []."
        ),
        "evidence": "is.null(deviance(glmmTMB(...cbpp...))) is TRUE.",
        "measured": {},
    },
    {
        "id": "glmmTMB-double-bar-one-group",
        "engine": "glmmTMB",
        "condition": "(x || g) terms",
        "quantity": ["varcorr"],
        "description": (
            "glmmTMB makes one diag() block named 'g' (rows (Intercept) and x under "
            "grp 'g', no covariance row); lme4 makes two terms 'g' and 'g.1'. Match "
            "varcorr rows by (var1) within the factor, not by grp."
        ),
        "evidence": (
            "glmmTMB(Reaction ~ Days + (Days || Subject), REML = TRUE): "
            "names(VarCorr(m)$cond) 'Subject', blockCode 'diag'; lmer grp 'Subject', "
            "'Subject.1'. logLik equal: -871.8346 both."
        ),
        "measured": {},
    },
    {
        "id": "lme4-glmm-deviance-conditional",
        "engine": "lme4",
        "condition": "glmer / glmer.nb",
        "quantity": ["deviance"],
        "description": (
            "deviance() of a GLMM is lme4's conditional deviance, not -2 logLik; "
            "for REML lmer fits deviance() is deprecated and the record holds "
            "REMLcrit() (= -2 logLik); for ML lmer fits -2 logLik."
        ),
        "evidence": f"glmer({_CBPP}): deviance 73.47428, -2 logLik 184.0531.",
        "measured": {"deviance": 73.47428, "minus2loglik": 184.0531},
    },
    {
        "id": "ordinal-df-and-theta",
        "engine": "ordinal",
        "condition": "clmm",
        "quantity": ["df", "theta", "deviance", "se"],
        "description": (
            "df counts thresholds + fixed effects + random-effect sds (wine: 4 + 2 + 1 "
            "= 7); theta holds clmm's ST (the random-effect sd, the lme4 theta of a "
            "GLMM); deviance() is NULL (None); se covers thresholds (or, for "
            "equidistant/symmetric, clmm's threshold parameters) and fixed effects."
        ),
        "evidence": (
            "clmm(rating ~ temp + contact + (1 | judge), wine): logLik -81.56541 "
            "(df 7), ST 1.131133."
        ),
        "measured": {"df": 7, "loglik": -81.56541},
    },
    {
        "id": "mgcv-multinom-deviance",
        "engine": "mgcv",
        "condition": "family multinomial",
        "quantity": ["deviance"],
        "description": "deviance(m) of a multinom gam is not -2 logLik; compare loglik.",
        "evidence": (
            "VerbAgg resp ~ Anger + Gender: logLik -3646.847, deviance 15239.69, "
            "-2 logLik 7293.694."
        ),
        "measured": {"loglik": -3646.847, "deviance": 15239.69},
    },
    {
        "id": "sigma-meaning",
        "engine": "*",
        "condition": "every fit",
        "quantity": ["sigma"],
        "description": (
            "sigma is the residual sd for Gaussian fits, the negative binomial size "
            "(theta; var = mu + mu^2/theta) for NB fits, None otherwise. lme4's own "
            "sigma() is 1 for glmer.nb, so the record takes getME(m, "
            "'glmer.nb.theta'); glmmTMB's sigma() is the size for nbinom2; mgcv's "
            "from family$getTheta(TRUE)."
        ),
        "evidence": (
            "grouseticks TICKS ~ YEAR + (1 | LOCATION): glmer.nb theta 2.049242 "
            "(sigma() 1), glmmTMB sigma 2.042564, gam nb theta 2.02185."
        ),
        "measured": {},
    },
    {
        "id": "lme4-gaussian-nonidentity-sigma",
        "engine": "lme4",
        "condition": "glmer, gaussian family with a non-identity link",
        "quantity": ["loglik", "varcorr", "theta", "fixef", "se"],
        "description": (
            "glmer leaves the residual variance out of the penalized problem (u ~ N(0, I) "
            "against working weights without 1/sigma^2), so the random effects are shrunk "
            "to zero: a singular fit. glmmTMB fits the model; glmmbench follows glmmTMB "
            "(sigma enters PIRLS through the weights) and is compared with it."
        ),
        "evidence": (
            "glmer(Reaction ~ Days + (1|Subject), sleepstudy, gaussian(link='log')): "
            "theta 0, logLik -950.9564, 'boundary (singular) fit'. glmmTMB: logLik "
            "-889.6810, sd 0.128818, sigma 29.3321. glmmbench: -889.6657, sd 0.1287, "
            "sigma 29.334 (the 0.015 gap is the expected-vs-observed information of "
            "lme4-noncanonical-laplace)."
        ),
        "measured": {"lme4_loglik": -950.956413506, "glmmTMB_loglik": -889.6809641},
    },
    {
        "id": "lme4-poisson-sqrt-modes",
        "engine": "lme4",
        "condition": "glmer, poisson(link = 'sqrt') with fitted means near 0",
        "quantity": ["loglik", "fixef", "varcorr"],
        "description": (
            "With the sqrt link mu = eta^2 is symmetric in eta; near mu = 0 the penalized "
            "deviance has several conditional modes and lme4's PIRLS (which does not check "
            "valideta) stops at one with some eta < 0. Which mode is found depends on the "
            "iteration path, so such fits are not a parity case."
        ),
        "evidence": (
            "glmer(TICKS ~ YEAR + scale(HEIGHT) + (1|BROOD), grouseticks, "
            "poisson('sqrt')): 2 fitted eta < 0 (min -0.039); at lme4's optimum an "
            "unconstrained PIRLS finds a mode with 29 eta < 0 and a penalized deviance "
            "807.75 below lme4's 810.79."
        ),
        "measured": {},
    },
    {
        "id": "lme4-hessian-noise",
        "engine": "lme4",
        "condition": "glmer standard errors (vcov from the finite-difference Hessian)",
        "quantity": ["se"],
        "description": (
            "lme4 differentiates its deviance function with PIRLS at tolPwrss = 1e-7 and a "
            "lagged log|L|^2 (lme4-laplace-pirls-tolerance), so its finite-difference "
            "Hessian carries that noise: standard errors move by about 1 %. glmmbench runs "
            "PIRLS to 1e-12 for its derivatives; its Hessian is stable under the step."
        ),
        "evidence": (
            f"glmer({_CBPP}, cbpp, binomial): Hessian diagonal 65.50 48.43 26.26 22.65 "
            "12.39, SE(period4) 0.42205; glmmbench's at lme4's optimum (step 1e-4 and "
            "1e-3 alike) 64.81 48.08 25.65 22.11 12.08, SE(period4) 0.42736 (+1.26 %)."
        ),
        "measured": {"se_period4_lme4": 0.422049159, "se_period4_native": 0.42736},
    },
]


def lookup(engine: str, quantity: str | None = None) -> list[dict]:
    """Entries for ``engine`` (and ``"*"``), optionally only those touching ``quantity``."""
    return [
        d
        for d in KNOWN_DISCREPANCIES
        if d["engine"] in (engine, "*") and (quantity is None or quantity in d["quantity"])
    ]
