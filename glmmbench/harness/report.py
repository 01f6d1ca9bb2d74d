"""Study reports: Markdown, self-contained HTML, the raw CSV and the figures.

The report is data first: `build` turns the fits table into a list of blocks
(headings, paragraphs, tables, figures) whose tables are the DataFrames of
`glmmbench.harness.compare`. `to_markdown` and `to_html` render the same blocks, so the
two documents cannot disagree; the HTML embeds the figures as base64 PNG.

    write_report(store.frame(), "reports/latest", meta=store.meta(),
                 problems=store.problems())

writes ``report.md``, ``report.html``, ``results.csv`` (one row per fit, the
estimates as columns) and ``parity.png``, ``recovery.png``, ``speed.png`` (and
``agq_nodes.png`` when the study has a series over nagq, ``smooths.png`` when it
fits smooths).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from glmmbench.harness import compare
from glmmbench.harness.catalogue import NATIVE

__all__ = ["Bullets", "Figure", "Heading", "Para", "Table", "build", "results_table", "to_html",
           "to_markdown", "write_report"]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    name: str  # file name, e.g. "parity.png"
    png: bytes
    caption: str


Block = Heading | Para | Bullets | Table | Figure

MAX_LISTED = 60  # rows of the per-fit listings before they are cut


# ------------------------------------------------------------------ formatting


def fmt(v) -> str:
    """One cell as text: 4 significant digits, small numbers in e-notation."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.2e}"
        return f"{v:.4g}"
    return str(v)


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in frame.columns]
    rows = [[fmt(v) for v in row] for row in frame.itertuples(index=False)]
    return header, rows


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; figures link to their PNG files."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            header, rows = _cells(b.frame)

            def esc(s: str) -> str:
                return s.replace("|", "\\|").replace("\n", " ")

            lines = ["| " + " | ".join(esc(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
            if b.caption:
                lines.insert(0, f"*{b.caption}*\n")
            out.append("\n".join(lines))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.name})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 78rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.3rem 0; }
figure { margin: 1rem 0; } img { max-width: 100%; }
"""


def _is_num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def to_html(blocks: Sequence[Block], title: str = "glmmbench report") -> str:
    """One self-contained page: the figures are embedded as base64 PNG."""
    e = html.escape
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            header, rows = _cells(b.frame)
            cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th>{e(h)}</th>" for h in header)
            trs = "".join(
                "<tr>" + "".join(f'<td class="num">{e(c)}</td>' if _is_num(c) else
                                 f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{trs}</tbody>"
                        "</table>")
        elif isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            body.append(f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,'
                        f'{data}"><figcaption>{e(b.caption)}</figcaption></figure>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------ figures


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(engines) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    return {e: palette[i % len(palette)] for i, e in enumerate(sorted(set(engines)))}


def parity_figure(par: pd.DataFrame) -> bytes:
    """Top: native (y) against R (x), one panel per quantity, symlog axes so that
    estimates of every size show. Bottom: |native - R| on a log scale. An x marks
    a comparison whose gap a known R-side discrepancy explains. Pairs that are not
    comparable are left out."""
    plt = _pyplot()
    # pairs with both values: a name only one side has is a failure counted in the
    # tables, with nothing to draw
    par = par[par["comparable"] & par["native"].notna() & par["reference"].notna()]
    quantities = [q for q in ("loglik", "fixef", "threshold", "se", "sdcor", "sigma",
                              "fixef_disp", "se_disp", "family_param")
                  if (par["quantity"] == q).any()]
    fig, axes = plt.subplots(2, len(quantities), figsize=(3.6 * len(quantities), 6.6),
                             squeeze=False)
    colors = _colors(par["engine"])
    floor = 1e-16  # exact agreement drawn on the floor of the log axis
    for j, q in enumerate(quantities):
        top, bottom = axes[0][j], axes[1][j]
        d = par[par["quantity"] == q]
        known = d["known"].str.len() > 0
        for engine, g in d.groupby("engine"):
            for mask, marker, size in ((~known.loc[g.index], "o", 14),
                                       (known.loc[g.index], "x", 22)):
                x = g.loc[mask, "reference"]
                top.scatter(x, g.loc[mask, "native"], s=size, marker=marker,
                            color=colors[engine], alpha=0.8,
                            label=engine if marker == "o" else None)
                bottom.scatter(x, np.maximum(g.loc[mask, "diff"].abs(), floor), s=size,
                               marker=marker, color=colors[engine], alpha=0.8)
        lo = np.nanmin(d[["reference", "native"]].to_numpy())
        hi = np.nanmax(d[["reference", "native"]].to_numpy())
        top.plot([lo, hi], [lo, hi], color="grey", lw=0.8, zorder=0)
        for ax in (top, bottom):
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel("R")
        top.set_yscale("symlog", linthresh=1.0)
        bottom.set_yscale("log")
        top.set_title(q)
        top.set_ylabel("native")
        bottom.set_ylabel("|native - R|")
    axes[0][0].legend(fontsize=7, title="x: known R-side discrepancy", title_fontsize=7)
    fig.tight_layout()
    return _png(fig)


def recovery_figure(rec: pd.DataFrame) -> bytes:
    """Bias of every fixed effect, threshold and standard deviation of a random effect,
    of a dispersion model's coefficients, glmmTMB's ``sigma()`` and a family's own
    parameters, and the Wald coverage where there is a standard error, by scenario, with
    bars of +- 2 Monte Carlo standard errors."""
    plt = _pyplot()
    sd = rec["quantity"].eq("sdcor") & rec["name"].str.startswith("sd(")
    d = rec[rec["quantity"].isin(["fixef", "threshold", "fixef_disp", "sigma", "family_param"])
            | sd].copy()
    d["label"] = d["problem"] + ": " + d["name"]
    labels = list(dict.fromkeys(d["label"]))
    pos = {lab: i for i, lab in enumerate(labels)}
    engines = sorted(d["engine"].unique())
    colors = _colors(engines)
    height = max(3.0, 0.22 * len(labels) + 1.2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    for i, engine in enumerate(engines):
        g = d[d["engine"] == engine]
        y = g["label"].map(pos) + (i - (len(engines) - 1) / 2) * 0.15
        ax1.errorbar(g["bias"], y, xerr=2 * g["bias_mcse"], fmt="o", ms=3.5, lw=0.8,
                     color=colors[engine], label=engine)
        ax2.errorbar(g["coverage"], y, xerr=2 * g["coverage_mcse"], fmt="o", ms=3.5, lw=0.8,
                     color=colors[engine])
    ax1.axvline(0, color="grey", lw=0.8)
    ax2.axvline(0.95, color="grey", lw=0.8, ls="--")
    ax1.set_yticks(range(len(labels)), labels, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("bias (estimate - truth)")
    ax2.set_xlabel("95% Wald coverage")
    ax2.set_xlim(-0.05, 1.05)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def speed_figure(sp: pd.DataFrame) -> bytes:
    """Time ratio native / R per problem and replicate (log scale)."""
    plt = _pyplot()
    problems = list(dict.fromkeys(sp["problem"]))
    pos = {p: i for i, p in enumerate(problems)}
    engines = sorted(sp["engine"].unique())
    colors = _colors(engines)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(problems) + 1.2)))
    for i, engine in enumerate(engines):
        g = sp[sp["engine"] == engine]
        y = g["problem"].map(pos) + (i - (len(engines) - 1) / 2) * 0.18
        ax.scatter(g["ratio"], y, s=16, color=colors[engine], label=f"vs {engine}")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(problems)), problems, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time native / R (same replicate; < 1: native faster)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def agq_nodes_figure(nodes: pd.DataFrame) -> bytes:
    """Per series: the log-likelihood gap to the largest nagq (symlog), and every
    estimate, against nagq; one line per engine."""
    plt = _pyplot()
    panels = list(dict.fromkeys(zip(nodes["series"], nodes["quantity"], nodes["name"],
                                    strict=True)))
    ncol = min(4, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow), squeeze=False)
    colors = _colors(nodes["engine"])
    for ax, (series, q, name) in zip(axes.flat, panels, strict=False):
        d = nodes[(nodes["series"] == series) & (nodes["quantity"] == q)
                  & (nodes["name"] == name)]
        for engine, g in d.groupby("engine"):
            ax.plot(g["nagq"], g["mean"], marker="o", ms=3, color=colors[engine], label=engine)
        ax.set_xscale("log")
        if q == "loglik_gap":
            ax.set_yscale("symlog", linthresh=1e-6)
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{series}: {name if q != 'loglik_gap' else 'loglik - loglik(max nagq)'}",
                     fontsize=8)
        ax.set_xlabel("nagq")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def smooth_curves(fits: pd.DataFrame) -> pd.DataFrame:
    """The partial effects on their grids of every 1-d smooth in the first replicate of
    each problem: one row per (problem, engine, term) with ``grid``, ``fit``, ``se``."""
    rows = []
    ok = fits[(fits["status"] == "ok") & (fits["replicate"] == 0)]
    for fit in ok.itertuples(index=False):
        for sm in (fit.record or {}).get("smooths") or []:
            if sm.get("grid"):
                rows.append((fit.problem, fit.engine, sm["term"], sm.get("var"),
                             np.asarray(sm["grid"], float), np.asarray(sm["fit"], float),
                             np.asarray(sm.get("se") or [np.nan] * len(sm["grid"]), float)))
    return pd.DataFrame(rows, columns=["problem", "engine", "term", "var", "grid", "fit", "se"])


def smooths_figure(curves: pd.DataFrame) -> bytes:
    """One panel per (problem, smooth): the native partial effect with its 95 % band,
    every R engine's curve over it."""
    plt = _pyplot()
    panels = list(dict.fromkeys(zip(curves["problem"], curves["term"], strict=True)))
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    colors = _colors(curves["engine"])
    for ax, (problem, term) in zip(axes.flat, panels, strict=False):
        d = curves[(curves["problem"] == problem) & (curves["term"] == term)]
        for c in d.itertuples(index=False):
            if c.engine == "glmmbench":
                ax.fill_between(c.grid, c.fit - 1.96 * c.se, c.fit + 1.96 * c.se,
                                color=colors[c.engine], alpha=0.2, lw=0)
            ax.plot(c.grid, c.fit, color=colors[c.engine], label=c.engine,
                    ls="-" if c.engine == "glmmbench" else "--")
        ax.set_title(f"{problem}: {term}", fontsize=8)
        ax.set_xlabel(d["var"].iloc[0])
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------ the document


def results_table(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per fit: the flat columns, then every estimate as its own column
    (``fixef:x``, ``se:x``, ``threshold:1|2``, ``sdcor:sd((Intercept)|g)``)."""
    flat = ["problem", "replicate", "engine", "family", "link", "formula", "nagq", "reml",
            "status", "converged", "loglik", "time_s", "wall_s", "message", "seed"]
    base = fits[flat].reset_index(drop=True)
    est = compare.estimates(fits)
    est = est[est["quantity"] != "loglik"]
    se = est[est["se"].notna()].assign(quantity=lambda d: d["quantity"].map(compare.SE_QUANTITY),
                                       value=lambda d: d["se"])
    long = pd.concat([est, se], ignore_index=True)
    if long.empty:
        return base
    long["column"] = long["quantity"] + ":" + long["name"]
    wide = long.pivot_table(index=["problem", "replicate", "engine"], columns="column",
                            values="value", aggfunc="first", sort=False)
    order = {q: i for i, q in enumerate(compare.QUANTITIES)}
    wide = wide[sorted(wide.columns, key=lambda c: order[c.split(":", 1)[0]])]
    return base.merge(wide.reset_index(), on=["problem", "replicate", "engine"], how="left")


def _problems_table(fits: pd.DataFrame, problems: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, g in fits.groupby("problem", sort=False):
        spec = problems.get(name, {})
        first = g.iloc[0]
        rows.append({"problem": name, "source": spec.get("source", ""),
                     "family": first["family"], "link": first["link"],
                     "nagq": first["nagq"], "reml": spec.get("reml"),
                     "formula": g["formula"].dropna().iloc[0] if g["formula"].notna().any()
                     else spec.get("formula"),
                     "replicates": g["replicate"].nunique(),
                     "engines": ", ".join(spec.get("engines") or dict.fromkeys(g["engine"]))})
    return pd.DataFrame(rows)


def _summary(fits, par, rec, sp, counts) -> list[str]:
    items = []
    native = counts[counts["engine"] == NATIVE]
    if len(native):
        n = native.iloc[0]
        items.append(f"native engine: {n['fits']} fits, {n['ok']} ok ({n['converged']} "
                     f"converged), {n['unsupported']} not supported yet, {n['error']} errors")
    r = counts[counts["engine"] != NATIVE]
    if len(r):
        items.append(f"R engines: {int(r['fits'].sum())} fits, {int(r['ok'].sum())} ok, "
                     f"{int(r['error'].sum())} errors, {int(r['timeout'].sum())} timeouts")
    if len(par):
        comparable = par[par["comparable"]]
        outside = comparable[~comparable["within_tol"]]
        explained = outside[outside["known"].str.len() > 0]
        one_side = int((comparable["only"] != "").sum())
        items.append(f"parity: {int(comparable['within_tol'].sum())} of {len(comparable)} "
                     f"comparisons within tolerance; of the {len(outside)} outside, "
                     f"{len(explained)} are explained by a known R-side discrepancy of their "
                     f"size, {int(par['unexplained'].sum())} are failures ({one_side} of "
                     "them a name only one engine has)")
        apart = par[~par["comparable"]]
        if len(apart):
            ids = sorted({i for k in apart["not_comparable"] for i in k.split(", ") if i})
            items.append(f"not comparable: {len(apart)} more pairs where R reports another "
                         f"quantity or fits another model ({', '.join(ids)}), counted apart")
        ll = comparable[comparable["quantity"] == "loglik"]
        for engine, g in ll.groupby("engine"):
            items.append(f"loglik vs {engine}: max |native - R| = {fmt(g['diff'].abs().max())}"
                         f" over {len(g)} fits")
    cov = rec[rec["quantity"].isin(["fixef", "threshold"]) & (rec["engine"] == NATIVE)]
    if len(cov):
        items.append(f"recovery (native): mean 95% Wald coverage {fmt(cov['coverage'].mean())}"
                     f" over {len(cov)} coefficients, mean |bias| {fmt(cov['bias'].abs().mean())}")
    for engine, g in sp.groupby("engine"):
        gm = compare.geomean(g["ratio"])
        items.append(f"speed vs {engine}: geometric mean time ratio native/R {fmt(gm)} "
                     f"over {len(g)} fits")
    return items


def _known_legend(par: pd.DataFrame) -> pd.DataFrame:
    """Every known discrepancy: how it was used here (cited to excuse a gap of its
    size, to mark pairs not comparable, or not at all) and, without a rule, that it
    is listed only."""
    from reference_r.known_discrepancies import KNOWN_DISCREPANCIES, RULES

    def ids(col: str) -> set[str]:
        return {i for k in par[col] for i in k.split(", ") if i}

    excused, apart = ids("known"), ids("not_comparable")
    rows = []
    for d in KNOWN_DISCREPANCIES:
        use = ("excuses a gap of its size" if d["id"] in excused else
               "not comparable" if d["id"] in apart else
               "listed, not used (no rule)" if d["id"] not in RULES else "not needed here")
        rows.append({"id": d["id"], "engine": d["engine"], "used": use,
                     "condition": d["condition"], "description": d["description"]})
    return pd.DataFrame(rows, columns=["id", "engine", "used", "condition", "description"])


def _failures(fits: pd.DataFrame) -> pd.DataFrame:
    bad = fits[(fits["status"] != "ok") | (fits["converged"] == False)]  # noqa: E712
    out = bad[["problem", "replicate", "engine", "status", "converged", "message"]].copy()
    out["message"] = out["message"].fillna("").str.slice(0, 240)
    return out.reset_index(drop=True)


def build(fits: pd.DataFrame, meta: dict | None = None,
          problems: dict[str, dict] | None = None) -> list[Block]:
    """The report as blocks, from the fits table (`Store.frame`)."""
    meta, problems = meta or {}, problems or {}
    par = compare.parity(fits)
    rec = compare.recovery(fits)
    sp = compare.speed(fits)
    counts = compare.status_counts(fits)
    status = compare.status_table(fits)
    versions = {}
    for f in fits[fits["status"] == "ok"].itertuples():
        versions.setdefault(f.engine, f.record.get("engine_version"))
        if f.record.get("r_version"):
            versions.setdefault("R", f.record["r_version"])
    blocks: list[Block] = [Heading(1, "glmmbench study report")]
    run = [f"{k}: {meta[k]}" for k in ("suite", "seed", "replicates", "workers", "started",
                                       "finished", "elapsed_s") if meta.get(k) is not None]
    run.append(f"{fits['problem'].nunique()} problems, {len(fits)} fits, total fit time "
               f"{fmt(float(fits['time_s'].sum()))} s")
    run.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    run.append(f"report written {datetime.now(UTC).isoformat(timespec='seconds')}")
    blocks += [Bullets(tuple(run)), Heading(2, "Verdict"),
               Para("One row per model class. Parity counts every comparison of a native "
                    "fit with an R engine on the same replicate (n within tolerance of m), "
                    "every name either fit estimates included: a name only one has is a "
                    "failure. A gap outside tolerance is explained only by a known R-side "
                    "discrepancy whose rule applies and whose measured size covers it, "
                    "else it is a failure, as is a native error. Pairs where R reports "
                    "another quantity or fits another model are not comparable and are "
                    "counted apart, with the entry that says so. Speed: median over "
                    "replicates of native time / the fastest R engine's. Coverage: mean "
                    "95% Wald coverage of the native fixed effects and thresholds against "
                    "the simulated truth, +- the mean of their Monte Carlo standard "
                    "errors."),
               Table(compare.verdict(fits, par, rec, sp)),
               Heading(2, "Summary"),
               Bullets(tuple(_summary(fits, par, rec, sp, counts)))]

    # figures first (with error bars where they estimate something), detail tables last
    figures: list[Block] = []
    details: list[Block] = [Heading(2, "Fits by engine"), Table(counts),
                            Heading(2, "Problems"), Table(_problems_table(fits, problems)),
                            Para("Every engine of every problem, with its verdict. 'not "
                                 "supported' means the native engine declined the model as "
                                 "not implemented yet."),
                            Table(status.drop(columns=["converged", "not_converged"]))]

    details += [Heading(2, "Parity: native minus R")]
    if len(par):
        tol = ", ".join(f"{q} {t.atol:g} + {t.rtol:g}|R|" for q, t in compare.PARITY_TOL.items())
        if (par["comparable"] & par["native"].notna() & par["reference"].notna()).any():
            figures += [Figure("parity.png", parity_figure(par),
                               "Parity: native vs R estimates (x: a known R-side discrepancy "
                               "applies)")]
        details += [
            Para("Each native fit against each R engine on the same replicate. A comparison "
                 f"is within tolerance when |native - R| <= atol + rtol |R| ({tol}). Known "
                 "R-side discrepancies (reference_r.known_discrepancies) that apply to a "
                 "comparison and explain a gap of its size are cited by id ('known'); "
                 "those that apply but are smaller than the gap are listed as 'exceeded'; "
                 "'not_comparable' names the entries that say R reports another quantity "
                 "there; 'only' marks a name one engine lacks."),
            Table(compare.parity_summary(par))]
        outside = par[par["comparable"] & ~par["within_tol"]].sort_values(
            "unexplained", ascending=False, kind="stable")
        if len(outside):
            details += [Table(outside.head(MAX_LISTED),
                              f"Comparisons outside tolerance, failures first ({len(outside)}; "
                              "first "
                              f"{min(len(outside), MAX_LISTED)} listed)")]
        details += [Table(_known_legend(par), "Known R-side discrepancies and their use")]
    else:
        details += [Para("No native fit has an R counterpart to compare with.")]

    details += [Heading(2, "Recovery of the simulated truth")]
    if len(rec):
        details += [Para("Over the replicates of each simulated problem: bias = mean(estimate "
                         "- truth), RMSE, and the share of 95% Wald intervals (estimate +- "
                         "1.96 se) that cover the truth, each with its Monte Carlo standard "
                         "error (*_mcse; Morris, White & Crowther 2019): with n replicates, "
                         "sd(error)/sqrt(n), sd(error^2)/sqrt(n)/(2 RMSE) and "
                         "sqrt(p(1 - p)/n)."),
                    Table(rec)]
        if rec["quantity"].isin(["fixef", "threshold"]).any():
            figures += [Figure("recovery.png", recovery_figure(rec),
                               "Bias (fixed effects, thresholds, random-effect sds) "
                               "and Wald coverage by scenario, +- 2 Monte Carlo SEs")]
    else:
        details += [Para("No simulated problem was fitted successfully.")]

    nodes = compare.agq_nodes(fits, problems)
    if len(nodes):
        wide = nodes.assign(column=nodes["engine"] + " nagq=" + nodes["nagq"].astype(str))
        wide = wide.pivot_table(index=["series", "quantity", "name"], columns="column",
                                values="mean", aggfunc="first", sort=False).reset_index()
        figures += [Figure("agq_nodes.png", agq_nodes_figure(nodes),
                           "Adaptive quadrature: log-likelihood and estimates against nagq")]
        details += [Heading(2, "Adaptive quadrature: accuracy against node count"),
                    Para("The same data fitted at increasing nagq (problems sharing a "
                         "data_key). loglik_gap is the mean over replicates of the "
                         "log-likelihood minus its value at the largest nagq (lme4's AGQ "
                         "values put back on the full scale); the other rows are mean "
                         "estimates. Laplace (nagq=1) is biased for small clusters; the "
                         "values settle as nodes are added."),
                    Table(wide)]

    curves = smooth_curves(fits)
    if len(curves):
        figures += [Figure("smooths.png", smooths_figure(curves),
                           "Fitted smooths: partial effects (centred as mgcv centres them) "
                           "in the first replicate of each problem, the native fit with its "
                           "95 % Bayesian band, each R engine's estimate dashed")]

    details += [Heading(2, "Speed")]
    if len(sp):
        figures += [Figure("speed.png", speed_figure(sp), "Time ratio native / R")]
        details += [Para("Fit times measured inside each engine's own process (R: "
                         "system.time around the fitting call), native / R on the same "
                         "replicate."), Table(compare.speed_summary(sp))]
    else:
        details += [Para("No pair of native and R fits to time.")]

    failures = _failures(fits)
    details += [Heading(2, "Fits that failed, are not supported, or did not converge")]
    if len(failures):
        details += [Table(failures.head(MAX_LISTED * 2),
                          f"{len(failures)} fits" + (f", first {MAX_LISTED * 2} listed"
                                                     if len(failures) > MAX_LISTED * 2 else ""))]
    else:
        details += [Para("None.")]
    if figures:
        blocks += [Heading(2, "Figures"), *figures]
    return blocks + [Heading(1, "Details"), *details]


def write_report(fits: pd.DataFrame, out_dir: str | Path, meta: dict | None = None,
                 problems: dict[str, dict] | None = None) -> dict[str, Path]:
    """Write report.md, report.html, results.csv and the figures; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = build(fits, meta, problems)
    paths = {}
    for b in blocks:
        if isinstance(b, Figure):
            paths[b.name] = out / b.name
            paths[b.name].write_bytes(b.png)
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text(to_markdown(blocks))
    paths["report.html"] = out / "report.html"
    paths["report.html"].write_text(to_html(blocks))
    paths["results.csv"] = out / "results.csv"
    results_table(fits).to_csv(paths["results.csv"], index=False)
    return paths
