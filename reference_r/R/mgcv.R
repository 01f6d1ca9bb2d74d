## mgcv::gam: random effects as bs = "re" smooths (translated on the Python
## side), multinom(K - 1) for multinomial responses, smooths passed through.

gb_mgcv_family <- function(family, link, K = NULL) {
  switch(family,
    negative_binomial = mgcv::nb(link = link),
    multinomial = mgcv::multinom(K = K - 1),
    gb_glm_family(family, link))
}

## Parametric coefficients: everything that no smooth owns.
gb_parametric <- function(m) {
  owned <- unlist(lapply(m$smooth, function(s) seq(s$first.para, length.out =
                                                     s$last.para - s$first.para + 1)))
  setdiff(seq_along(stats::coef(m)), owned)
}

gb_is_re <- function(s) inherits(s, "random.effect")

## edf, basis size, basis class and smoothing parameters of each non-"re" smooth,
## plus the smooth evaluated (type = "terms", i.e. centred as mgcv centres it)
## on 50 points over the covariate's range; the grid only for 1-d smooths
## without a `by` variable.
gb_smooths <- function(m) {
  out <- list()
  for (s in m$smooth) {
    if (gb_is_re(s)) next
    idx <- s$first.para:s$last.para
    sp <- if (!is.null(s$first.sp)) unname(m$sp[s$first.sp:s$last.sp]) else numeric(0)
    entry <- list(term = s$label, edf = sum(m$edf[idx]), k = as.integer(s$bs.dim),
                  class = class(s)[1], lambda = as.list(sp),
                  var = NA_character_, grid = list(), fit = list())
    if (length(s$term) == 1 && identical(s$by, "NA")) {
      x <- m$model[[s$term]]
      grid <- seq(min(x), max(x), length.out = 50)
      nd <- m$model[rep(1, 50), , drop = FALSE]
      nd[[s$term]] <- grid
      pr <- stats::predict(m, nd, type = "terms", terms = s$label)
      entry$var <- s$term
      entry$grid <- as.list(grid)
      entry$fit <- as.list(unname(pr[, s$label]))
    }
    out[[length(out) + 1]] <- entry
  }
  out
}

## Variance components of the "re" smooths (and the scale for Gaussian fits),
## from gam.vcomp(): labels are mgcv's ("s(g)", "s.1(g)", "scale").
gb_mgcv_varcorr <- function(m, gaussian) {
  labels <- unlist(lapply(m$smooth, function(s) if (gb_is_re(s)) s$label))
  keep <- c(labels, if (gaussian) "scale")
  vc <- NULL
  if (length(keep)) utils::capture.output(vc <- mgcv::gam.vcomp(m))
  sd <- if (is.matrix(vc)) stats::setNames(vc[, 1], rownames(vc)) else vc
  sd <- sd[intersect(keep, names(sd))]
  n <- length(sd)
  list(grp = names(sd), var1 = rep(NA_character_, n), var2 = rep(NA_character_, n),
       vcov = unname(sd^2), sdcor = unname(sd))
}

gb_fit_mgcv <- function(formula, data, family, link, nagq, reml, options) {
  f <- gb_formula(formula)
  method <- if (is.null(options$method)) "REML" else options$method
  aux <- list()
  K <- NULL
  if (family == "multinomial") {
    resp <- deparse(f[[2]])
    y <- data[[resp]]
    if (!is.factor(y)) stop("multinomial response '", resp, "' must be a factor")
    aux$levels <- levels(y)
    K <- nlevels(y)
    if (K < 2) stop("multinomial response '", resp, "' has fewer than 2 levels")
    data[[resp]] <- as.integer(y) - 1L
    f <- c(list(f), rep(list(f[-2]), K - 2))
  }
  fam <- gb_mgcv_family(family, link, K)
  t <- system.time(m <- mgcv::gam(f, data = data, family = fam, method = method))
  para <- gb_parametric(m)
  beta <- stats::coef(m)[para]
  se <- sqrt(diag(m$Vp))[para]
  names(se) <- names(beta)
  gaussian <- family == "gaussian"
  sigma <- if (gaussian) sqrt(m$scale) else
    if (family == "negative_binomial") m$family$getTheta(TRUE) else NA_real_
  groups <- options$re_groups
  aux$ngroups <- vapply(names(groups), function(l)
    nlevels(interaction(m$model[groups[[l]]], drop = TRUE)), integer(1))
  outer <- m$outer.info$conv
  ok <- !isFALSE(m$converged) && (is.null(outer) || outer == "full convergence")
  msgs <- c(if (isFALSE(m$converged)) "gam: the penalized IRLS did not converge",
            if (!is.null(outer) && outer != "full convergence")
              paste("gam smoothing-parameter optimisation:", outer))
  gb_record(
    engine = "mgcv", package = "mgcv", m_time = t[["elapsed"]],
    fixef = beta, se = se, varcorr = gb_mgcv_varcorr(m, gaussian), sigma = sigma,
    stats = gb_fit_stats(m), ngroups = integer(0), converged = ok, messages = msgs,
    smooths = gb_smooths(m), aux = aux
  )
}
