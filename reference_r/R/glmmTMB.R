## glmmTMB: Laplace approximation by TMB; REML for Gaussian responses.

gb_tmb_family <- function(family, link) {
  if (family == "negative_binomial") return(glmmTMB::nbinom2(link = link))
  gb_glm_family(family, link)
}

gb_fit_glmmTMB <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  fam <- gb_tmb_family(family, link)
  t <- system.time(m <- glmmTMB::glmmTMB(f, data = data, family = fam, REML = isTRUE(reml)))
  beta <- glmmTMB::fixef(m)$cond
  se <- sqrt(diag(as.matrix(stats::vcov(m)$cond)))[names(beta)]
  gaussian <- family == "gaussian"
  ## sigma(): residual sd (Gaussian), the size parameter theta (nbinom2).
  sigma <- if (gaussian || family == "negative_binomial") stats::sigma(m) else NA_real_
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
    converged = ok && pd, messages = msgs
  )
}
