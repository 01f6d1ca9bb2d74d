## ordinal::clmm: cumulative link mixed models (Laplace or AGQ).

gb_fit_ordinal <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  threshold <- if (is.null(options$threshold)) "flexible" else options$threshold
  t <- system.time(m <- ordinal::clmm(f, data = data, link = link, threshold = threshold,
                                      nAGQ = nagq))
  v <- stats::vcov(m)
  ## Theta holds the thresholds on the "1|2" scale for every threshold structure.
  th <- m$Theta
  if (is.matrix(th)) th <- stats::setNames(th[1, ], colnames(th))
  est <- c(m$alpha, m$beta)
  se <- sqrt(diag(v))[names(est)]
  ok <- identical(as.numeric(m$optRes$convergence), 0)
  msgs <- if (!ok) paste0("clmm optimizer (code ", m$optRes$convergence, "): ",
                         m$optRes$message)
  gb_record(
    engine = "ordinal", package = "ordinal", m_time = t[["elapsed"]],
    fixef = m$beta, se = se, thresholds = th,
    varcorr = gb_varcorr(ordinal::VarCorr(m)),
    theta = unlist(lapply(m$ST, function(s) s[lower.tri(s, diag = TRUE)])),
    stats = gb_fit_stats(m), ngroups = m$dims$nlev.gf,
    converged = ok, messages = msgs
  )
}
