"""The tutorial pages (docs/tutorial/*.md) run: every ```python block of a page, in
order, in one namespace, with live R for the reference fits. A page whose numbers
drift from what it says fails its own assertions; where checking a page's number needs
more R than the page shows, the check is here (``PAGE_CHECKS``), run on the page's
namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from .rscript import run_r

PAGES = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorial").glob("3*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
Z975 = 1.959963984540054  # qnorm(0.975)


def _profile_limits_are_lme4s_roots(ns: dict) -> None:
    """3.1: the profile interval for Anger against lme4's own Laplace likelihood, as
    lme4's ``confint(method = "profile")`` would take about three minutes: glmer at
    ``tolPwrss = 1e-12`` with nloptwrap's stopping tolerances tightened (no Hessian: 3
    fits in about 8 s), where it reaches the native optimum (measured 1.6e-9 below it;
    at nloptwrap's default tolerances it stops 5e-6 to 1.1e-5 short, by machine),
    refitted with Anger's coefficient held at each native limit (an offset). The signed
    root deviance there is +-qnorm(0.975); 1e-5 in zeta is 2e-7 in the limits."""
    m, data, limits = ns["m"], ns["verbagg"], ns["profile"].loc["Anger"]
    ref = run_r("""
        ctl <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12, calc.derivs = FALSE,
                            optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                                           xtol_rel = 0, ftol_rel = 0, maxeval = 1e5))
        loglik <- function(b) {  # lme4's maximum, with Anger's coefficient at b if given
          f <- r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)
          if (!is.na(b)) {
            d$off <- b * d$Anger
            f <- r2 ~ Gender + btype + situ + (1 | id) + (1 | item) + offset(off)
          }
          c(logLik(glmer(f, d, binomial, control = ctl, start = list(theta = s$theta))))
        }
        ll <- sapply(c(NA, lim$lo, lim$hi), loglik)
        list(loglik = ll[1], zeta = I(c(-1, 1) * sqrt(2 * (ll[1] - ll[2:3]))))""",
                d=data, s=pd.DataFrame({"theta": m.theta}),
                lim=pd.DataFrame({"lo": [limits["2.5 %"]], "hi": [limits["97.5 %"]]}))
    assert ref["loglik"] == pytest.approx(m.loglik, abs=1e-7)
    assert ref["zeta"] == pytest.approx([-Z975, Z975], abs=1e-5)


PAGE_CHECKS = {"31_logistic": _profile_limits_are_lme4s_roots}


def test_there_is_a_page_per_section():
    assert [p.name[:2] for p in PAGES] == ["31", "32", "33", "34", "35", "36", "37"]


@pytest.mark.r
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_runs(page):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python code"
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name}[block {i + 1}]", "exec"), namespace)
    if page.stem in PAGE_CHECKS:
        PAGE_CHECKS[page.stem](namespace)
