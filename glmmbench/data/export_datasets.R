# Writes the datasets shipped in glmmbench/data from R's own copies.
# Run from this folder:  Rscript export_datasets.R
# Each dataset becomes NAME.csv plus NAME.json, which records every column's type
# (factor / ordered / integer / double / logical) and R's factor level order.
suppressPackageStartupMessages({library(lme4); library(ordinal)})
data(sleepstudy, Penicillin, cbpp, grouseticks, VerbAgg, InstEval, Dyestuff, package = "lme4")
data(wine, soup, package = "ordinal")
sets <- list(sleepstudy = sleepstudy, Penicillin = Penicillin, cbpp = cbpp,
             grouseticks = grouseticks, VerbAgg = VerbAgg, InstEval = InstEval, Dyestuff = Dyestuff,
             wine = wine,
             soup = soup)
json_str <- function(x) paste0('"', gsub('"', '\\\\"', x), '"')
for (nm in names(sets)) {
  d <- sets[[nm]]
  write.csv(d, paste0(nm, ".csv"), row.names = FALSE, na = "")
  cols <- vapply(names(d), function(v) {
    x <- d[[v]]
    type <- if (is.ordered(x)) "ordered" else if (is.factor(x)) "factor" else
      if (is.logical(x)) "logical" else if (is.integer(x)) "integer" else "double"
    lev <- if (is.factor(x)) paste0(', "levels": [', paste(json_str(levels(x)), collapse = ", "), "]") else ""
    paste0("    ", json_str(v), ': {"type": "', type, '"', lev, "}")
  }, "")
  writeLines(c("{", paste0('  "name": ', json_str(nm), ","),
               paste0('  "source": "R package ', if (nm %in% c("wine", "soup")) "ordinal" else "lme4", '",'),
               paste0('  "nrow": ', nrow(d), ","), '  "columns": {',
               paste(cols, collapse = ",\n"), "  }", "}"), paste0(nm, ".json"))
}
