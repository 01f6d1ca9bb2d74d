## lme4: lmer (Gaussian, identity link), glmer (other families, nAGQ), glmer.nb.

gb_fit_lme4 <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  if (family == "gaussian" && link == "identity") {
    t <- system.time(m <- lme4::lmer(f, data = data, REML = isTRUE(reml)))
  } else if (family == "negative_binomial") {
    t <- system.time(m <- lme4::glmer.nb(f, data = data, nAGQ = nagq))
  } else {
    fam <- gb_glm_family(family, link)
    t <- system.time(m <- lme4::glmer(f, data = data, family = fam, nAGQ = nagq))
  }
  gb_record_lme4(m, t[["elapsed"]], family)
}

gb_record_lme4 <- function(m, elapsed, family, engine = "lme4") {
  beta <- lme4::fixef(m)
  se <- sqrt(diag(as.matrix(stats::vcov(m))))
  names(se) <- names(beta)
  ## NB: the size theta (sigma() is 1 for glmer.nb). Gaussian: the residual sd.
  ## Gamma: sigma() = sqrt((Pearson X^2 + |u|^2) / n), a moment estimate of the
  ## CV (lme4-gamma-loglik-hybrid), the quantity glmmTMB's sigma() estimates by ML.
  sigma <- if (family == "negative_binomial") lme4::getME(m, "glmer.nb.theta") else
    if (family %in% c("gaussian", "Gamma")) stats::sigma(m) else NA_real_
  ## deviance() is deprecated for REML fits; report the criterion optimised.
  dev <- if (lme4::isLMM(m) && lme4::isREML(m)) lme4::REMLcrit(m) else stats::deviance(m)
  conv <- gb_lme4_convergence(m)
  gb_record(
    engine = engine, package = "lme4", m_time = elapsed, fixef = beta, se = se,
    varcorr = gb_varcorr_df(as.data.frame(lme4::VarCorr(m))),
    theta = lme4::getME(m, "theta"), sigma = sigma,
    stats = gb_fit_stats(m, deviance = dev), ngroups = lme4::ngrps(m),
    converged = conv$converged, messages = conv$messages
  )
}
