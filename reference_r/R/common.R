## Shared helpers for the glmmbench reference fits; sourced once per worker.
## Every gb_fit_<engine>() returns one list in the FitRecord schema (plain
## vectors only) plus `aux`, engine-specific facts the Python side needs to
## rename things (see reference_r/names.py).

gb_column <- function(kind, values, na, levels, ordered) {
  na <- as.logical(na)
  switch(kind,
    double = { values[na] <- NA_real_; values },
    integer = { values[na] <- NA_integer_; values },
    logical = { out <- as.logical(values); out[na] <- NA; out },
    factor = {
      values[na] <- NA_integer_
      structure(values, levels = levels, class = c(if (ordered) "ordered", "factor"))
    },
    character = { values[na] <- NA_character_; factor(values) },
    stop("unknown column kind: ", kind)
  )
}

gb_data_frame <- function(columns, n) {
  structure(columns, class = "data.frame", row.names = c(NA_integer_, -as.integer(n)))
}

gb_describe <- function(data) {
  lapply(data, function(x) list(
    class = class(x), typeof = typeof(x),
    levels = if (is.factor(x)) levels(x) else character(0),
    ordered = is.ordered(x), n_na = sum(is.na(x)), length = length(x),
    head = as.list(as.character(utils::head(x, 6)))
  ))
}

gb_formula <- function(text) {
  f <- eval(parse(text = text), envir = globalenv())
  if (is.list(f)) f else stats::as.formula(f, env = globalenv())
}

gb_glm_family <- function(family, link) {
  ctor <- switch(family, gaussian = stats::gaussian, binomial = stats::binomial,
                 poisson = stats::poisson, Gamma = stats::Gamma,
                 stop("no stats family for ", family))
  do.call(ctor, list(link = link))
}

## One row per variance and then per covariance (lower triangle, column-major),
## the row order of lme4's as.data.frame(VarCorr()); diagonal blocks
## (glmmTMB's diag()) get no covariance rows.
gb_varcorr <- function(mats, residual_sd = NULL) {
  grp <- var1 <- var2 <- character(0)
  vcov <- sdcor <- numeric(0)
  for (g in names(mats)) {
    v <- as.matrix(mats[[g]])
    nm <- colnames(v)
    if (is.null(nm)) nm <- rep("(Intercept)", ncol(v))
    sd <- sqrt(diag(v))
    grp <- c(grp, rep(g, length(nm))); var1 <- c(var1, nm)
    var2 <- c(var2, rep(NA_character_, length(nm)))
    vcov <- c(vcov, diag(v)); sdcor <- c(sdcor, sd)
    if (identical(names(attr(mats[[g]], "blockCode")), "diag") || ncol(v) < 2) next
    low <- which(lower.tri(v), arr.ind = TRUE)
    low <- low[order(low[, "col"], low[, "row"]), , drop = FALSE]
    for (k in seq_len(nrow(low))) {
      i <- low[k, "row"]; j <- low[k, "col"]
      grp <- c(grp, g); var1 <- c(var1, nm[j]); var2 <- c(var2, nm[i])
      vcov <- c(vcov, v[i, j]); sdcor <- c(sdcor, v[i, j] / (sd[i] * sd[j]))
    }
  }
  if (!is.null(residual_sd)) {
    grp <- c(grp, "Residual"); var1 <- c(var1, NA_character_)
    var2 <- c(var2, NA_character_)
    vcov <- c(vcov, residual_sd^2); sdcor <- c(sdcor, residual_sd)
  }
  list(grp = grp, var1 = var1, var2 = var2,
       vcov = unname(vcov), sdcor = unname(sdcor))
}

gb_varcorr_df <- function(df) {
  list(grp = as.character(df$grp), var1 = as.character(df$var1),
       var2 = as.character(df$var2), vcov = as.numeric(df$vcov),
       sdcor = as.numeric(df$sdcor))
}

gb_or_na <- function(expr) {
  value <- tryCatch(expr, error = function(e) NULL)
  if (is.null(value) || length(value) != 1) NA_real_ else as.numeric(value)
}

## Fit statistics that every engine reports through logLik()/AIC()/BIC().
gb_fit_stats <- function(m, deviance = gb_or_na(stats::deviance(m))) {
  ll <- stats::logLik(m)
  list(loglik = as.numeric(ll), df = as.numeric(attr(ll, "df")),
       aic = gb_or_na(stats::AIC(m)), bic = gb_or_na(stats::BIC(m)),
       deviance = deviance, nobs = as.integer(stats::nobs(m)))
}

gb_named <- function(x) {
  nm <- names(x)
  x <- as.numeric(x)
  names(x) <- if (is.null(nm)) character(length(x)) else nm
  x
}

gb_record <- function(engine, package, m_time, fixef, se, varcorr, theta = numeric(0),
                      sigma = NA_real_, stats, ngroups, converged, messages = character(0),
                      thresholds = numeric(0), smooths = list(), aux = list()) {
  c(list(
    engine = engine,
    engine_version = as.character(utils::packageVersion(package)),
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    ngroups = as.list(ngroups),
    fixef = as.list(gb_named(fixef)), se = as.list(gb_named(se)),
    thresholds = as.list(gb_named(thresholds)),
    varcorr = lapply(varcorr, as.list), theta = as.list(unname(as.numeric(theta))),
    sigma = as.numeric(sigma), converged = isTRUE(converged),
    messages = as.list(as.character(messages)), time_s = m_time,
    smooths = smooths, aux = aux
  ), stats)
}

## lme4's verdict: the optimizer's code and lme4's own checks (gradient,
## Hessian); a singular fit is reported but is not a convergence failure.
gb_lme4_convergence <- function(m) {
  conv <- m@optinfo$conv
  code <- conv$lme4$code
  ok <- identical(as.numeric(conv$opt), 0) && (is.null(code) || all(code >= 0))
  msgs <- c(as.character(unlist(m@optinfo$warnings)), as.character(conv$lme4$messages))
  if (!identical(as.numeric(conv$opt), 0)) {
    msgs <- c(msgs, paste0("optimizer (code ", conv$opt, "): ", m@optinfo$message))
  }
  list(converged = ok, messages = msgs)
}

## Entry point called from the worker: dispatch, catch warnings and messages,
## turn an R error into list(error = conditionMessage(e), call = ...).
gb_fit <- function(engine, formula, data, family, link, nagq, reml, options) {
  log <- new.env()
  log$messages <- character(0)
  keep <- function(text) log$messages <- c(log$messages, sub("\n+$", "", text))
  out <- tryCatch(
    withCallingHandlers({
      if (!is.null(options$r_sleep)) Sys.sleep(options$r_sleep)
      fitter <- get(paste0("gb_fit_", engine), envir = globalenv())
      fitter(formula, data, family, link, nagq, reml, options)
    },
    warning = function(w) { keep(conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { keep(conditionMessage(m)); invokeRestart("muffleMessage") }),
    error = function(e) {
      call <- conditionCall(e)
      list(error = conditionMessage(e),
           call = if (is.null(call)) NA_character_ else
             substr(paste(deparse(call, nlines = 2), collapse = " "), 1, 300),
           messages = as.list(unique(log$messages)))
    }
  )
  if (is.null(out$error)) {
    out$messages <- as.list(unique(c(log$messages, unlist(out$messages))))
  }
  out
}
