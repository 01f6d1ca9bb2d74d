## glmmTMB: Laplace approximation by TMB; REML for Gaussian responses.

gb_tmb_family <- function(family, link) {
  switch(family,
    negative_binomial = glmmTMB::nbinom2(link = link),
    nbinom1 = glmmTMB::nbinom1(link = link),
    beta = glmmTMB::beta_family(link = link),
    betabinomial = glmmTMB::betabinomial(link = link),
    ordbeta = glmmTMB::ordbeta(link = link),
    compois = glmmTMB::compois(link = link),
    t = glmmTMB::t_family(link = link),
    tweedie = glmmTMB::tweedie(link = link),
    truncated_poisson = glmmTMB::truncated_poisson(link = link),
    truncated_nbinom2 = glmmTMB::truncated_nbinom2(link = link),
    truncated_nbinom1 = glmmTMB::truncated_nbinom1(link = link),
    genpois = glmmTMB::genpois(link = link),
    gb_glm_family(family, link))
}

## Families whose sigma() is a free parameter of the fit (sigma-meaning).
gb_tmb_sigma_families <- c("gaussian", "negative_binomial", "nbinom1", "Gamma", "beta",
                           "truncated_nbinom2", "truncated_nbinom1", "genpois", "t", "tweedie",
                           "betabinomial", "ordbeta", "compois")

gb_fit_glmmTMB <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  fam <- gb_tmb_family(family, link)
  disp <- if (is.null(options$dispformula)) ~1 else stats::as.formula(options$dispformula)
  ## ordbeta's default start, cut points psi = (0, 0), has log(F1 - F2) = log(0) for
  ## every y in (0, 1): NaN at the start (known_discrepancies glmmTMB-ordbeta-start)
  start <- if (family == "ordbeta") list(psi = c(-1, 1)) else NULL
  t <- system.time(m <- glmmTMB::glmmTMB(f, data = data, family = fam, REML = isTRUE(reml),
                                         dispformula = disp, start = start))
  beta <- glmmTMB::fixef(m)$cond
  se <- sqrt(diag(as.matrix(stats::vcov(m)$cond)))[names(beta)]
  gaussian <- family == "gaussian"
  ## sigma(): residual sd (Gaussian), size theta (nbinom2: var = mu (1 + mu / theta)),
  ## phi (nbinom1: var = mu (1 + phi)), 1 / sqrt(shape) = CV (Gamma), the precision phi
  ## (beta: var = mu (1 - mu) / (1 + phi)), phi (genpois: var = phi mu), the truncated
  ## negative binomials' parents' dispersion.
  sigma <- if (family %in% gb_tmb_sigma_families) stats::sigma(m) else NA_real_
  ok <- identical(as.numeric(m$fit$convergence), 0)
  pd <- isTRUE(m$sdr$pdHess)
  msgs <- c(if (!ok) paste0("nlminb (code ", m$fit$convergence, "): ", m$fit$message),
            if (!pd) "non-positive-definite Hessian (sdr$pdHess is FALSE)")
  gb_record(
    engine = "glmmTMB", package = "glmmTMB", m_time = t[["elapsed"]],
    fixef = beta, se = se,
    varcorr = gb_varcorr(glmmTMB::VarCorr(m)$cond, if (gaussian) stats::sigma(m)),
    sigma = sigma, stats = gb_fit_stats(m),
    ngroups = vapply(m$modelInfo$reTrms$cond$flist, nlevels, integer(1)),
    converged = ok && pd, messages = msgs,
    aux = c(
      list(family_params = as.list(glmmTMB::family_params(m))),
      if (is.null(options$dispformula)) list() else list(
        fixef_disp = as.list(glmmTMB::fixef(m)$disp),
        se_disp = as.list(stats::setNames(sqrt(diag(as.matrix(stats::vcov(m)$disp))),
                                          names(glmmTMB::fixef(m)$disp)))))
  )
}
