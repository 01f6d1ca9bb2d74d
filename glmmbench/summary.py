"""Text rendering of a GLMMResult, in lme4's order (results are data; this renders)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from glmmbench.results import GLMMResult

__all__ = ["render_summary"]


def render_summary(res: GLMMResult) -> str:
    lines = _failed_checks(res)
    if res.is_lmm:
        crit = "REML" if res.reml else "maximum likelihood"
        lines.append(f"Linear mixed model fit by {crit} ['lmerMod']")
    else:
        approx = ("Laplace Approximation" if res.nagq == 1
                  else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {res.nagq})")
        lines.append(f"{res.family.title} fit by maximum likelihood ({approx})")
        lines.append(f" Family: {res.family.name}  ( {res.family.link.name} )")
    lines.append(f"Formula: {res.formula}")
    lines.append("")
    if res.is_lmm and res.reml:
        lines.append(f"REML criterion at convergence: {-2 * res.loglik:.4f}")
    else:
        stats_row = pd.DataFrame(
            [[res.aic, res.bic, res.loglik, -2 * res.loglik, res.nobs - res.df]],
            columns=["AIC", "BIC", "logLik", "deviance", "df.resid"])
        lines.append(stats_row.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    lines.append("")
    lines.append("Random effects:")
    vc = res.varcorr
    shown = vc[vc["var2"].isna()].copy()
    shown["Variance"] = shown["vcov"]
    shown["Std.Dev."] = shown["sdcor"]
    shown = shown.rename(columns={"grp": "Groups", "var1": "Name"})
    shown["Name"] = shown["Name"].fillna("")
    lines.append(shown[["Groups", "Name", "Variance", "Std.Dev."]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    cors = vc[vc["var2"].notna()]
    for _, row in cors.iterrows():
        lines.append(f"  Corr({row['grp']}: {row['var1']}, {row['var2']}) = {row['sdcor']:.3f}")
    groups = ", ".join(f"{g}, {n}" for g, n in res.ngroups.items())
    lines.append(f"Number of obs: {res.nobs}, groups:  {groups}")
    disp = res.optinfo.get("dispersion")
    if disp is not None and not res.family.residual:
        lines.append("")
        lines.append(f"Dispersion parameter for {res.family.name} family, "
                     f"{res.family.dispersion_text}: {disp['value']:.4g} (SE {disp['se']:.3g})")
    if res.design.disp_X is not None:
        lines.append("")
        lines.append(f"Dispersion model (glmmTMB's betad; {res.family.dispersion_text} = "
                     f"exp({res.family.betad_power:g} betad)):")
        lines.append(res.disp_table().to_string(float_format=lambda v: f"{v:.5g}"))
    lines.append("")
    lines.append("Fixed effects:")
    lines.append(res.coef_table().to_string(float_format=lambda v: f"{v:.5g}"))
    if res.fitted_smooths:
        from glmmbench.inference.gamm import TEST_METHOD

        lines.append("")
        lines.append("Approximate significance of smooth terms:")
        table = res.smooth_tests().join(res.smooths.set_index("term")[["lambda", "sd"]])
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
        lines.append(f"  ({TEST_METHOD}.)")
    if res.thresholds is not None:
        lines.append("")
        lines.append(f"Threshold coefficients ({res.family.threshold}):")
        th = pd.DataFrame({"Estimate": res.thresholds, "Std. Error": res.threshold_se})
        th["z value"] = th["Estimate"] / th["Std. Error"]
        lines.append(th.to_string(float_format=lambda v: f"{v:.5g}"))
    if res.messages:
        lines.append("")
        lines.extend(res.messages)
    return "\n".join(lines)


def _failed_checks(res: GLMMResult) -> list[str]:
    """The failed checks of ``res.diagnostics()``, on top: separation first."""
    table = res.diagnostics()
    failed = table[table["verdict"] == "fail"]
    if failed.empty:
        return []
    order = sorted(failed.index, key=lambda c: (c != "separation", c == "convergence"))
    lines = [f"Diagnostics: {len(failed)} check(s) failed (see res.diagnostics()):"]
    lines += [f"  {c}: {failed.loc[c, 'message']}" for c in order]
    return lines + [""]
