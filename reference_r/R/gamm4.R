## gamm4: smooths as lme4 random effects; the fit has a gam part (fixed effects,
## smooths) and a mer part (variance components, likelihood).

gb_fit_gamm4 <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  r <- gb_formula(options$random)
  fam <- gb_glm_family(family, link)
  t <- system.time(m <- gamm4::gamm4(f, random = r, data = data, family = fam,
                                     REML = isTRUE(reml)))
  g <- m$gam
  mer <- m$mer
  para <- gb_parametric(g)
  beta <- stats::coef(g)[para]
  se <- sqrt(diag(g$Vp))[para]
  names(se) <- names(beta)
  ## The smooths' penalties are the random-effect groups "Xr", "Xr.0", ...
  vc <- as.data.frame(lme4::VarCorr(mer))
  vc <- vc[!grepl("^Xr(\\.[0-9]+)?$", vc$grp), , drop = FALSE]
  ng <- lme4::ngrps(mer)
  ng <- ng[!grepl("^Xr(\\.[0-9]+)?$", names(ng))]
  dev <- if (lme4::isLMM(mer) && lme4::isREML(mer)) lme4::REMLcrit(mer) else
    stats::deviance(mer)
  conv <- gb_lme4_convergence(mer)
  gb_record(
    engine = "gamm4", package = "gamm4", m_time = t[["elapsed"]],
    fixef = beta, se = se, varcorr = gb_varcorr_df(vc),
    sigma = if (family == "gaussian") stats::sigma(mer) else NA_real_,
    stats = gb_fit_stats(mer, deviance = dev), ngroups = ng,
    converged = conv$converged, messages = conv$messages, smooths = gb_smooths(g)
  )
}
