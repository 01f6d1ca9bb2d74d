"""Report rendering on a small hand-made fits table (no R needed)."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

from glmmbench.harness import report
from tests.test_harness_compare import sample_fits


@pytest.fixture
def fits() -> pd.DataFrame:
    return sample_fits(r_error="RError: a|b")  # a pipe, to check table escaping


def test_fmt():
    assert report.fmt(None) == "" and report.fmt(float("nan")) == ""
    assert report.fmt(True) == "yes" and report.fmt(3) == "3"
    assert report.fmt(0.123456) == "0.1235" and report.fmt(2.5e-5) == "2.50e-05"
    assert report.fmt(0.0) == "0" and report.fmt("a|b") == "a|b"


def test_markdown_and_html_render_the_same_tables():
    t = pd.DataFrame({"name": ["sd((Intercept)|g)", "<x>"], "value": [1.5, None]})
    blocks = [report.Heading(2, "T"), report.Para("p & q"), report.Table(t, "cap"),
              report.Figure("f.png", b"\x89PNG fake", "a figure")]
    md = report.to_markdown(blocks)
    assert "| sd((Intercept)\\|g) | 1.5 |" in md  # pipes escaped in cells
    assert "![a figure](f.png)" in md and "## T" in md
    html = report.to_html(blocks)
    assert "<td>sd((Intercept)|g)</td>" in html and "&lt;x&gt;" in html and "p &amp; q" in html
    src = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(src) == b"\x89PNG fake"


def test_results_table_one_row_per_fit(fits):
    res = report.results_table(fits)
    assert len(res) == len(fits)
    for col in ("problem", "replicate", "engine", "family", "loglik", "time_s", "converged",
                "message", "fixef:(Intercept)", "fixef:x", "se:x", "sdcor:sd((Intercept)|g)"):
        assert col in res.columns
    row = res[(res["engine"] == "lme4") & (res["replicate"] == 0)].iloc[0]
    assert row["fixef:(Intercept)"] == 1.2001 and row["se:(Intercept)"] == 0.101
    assert res[res["problem"] == "q"]["fixef:x"].isna().all()


def test_write_report_files(fits, tmp_path):
    paths = report.write_report(fits, tmp_path, meta={"suite": "test", "seed": 1})
    for name in ("report.md", "report.html", "results.csv", "parity.png", "recovery.png",
                 "speed.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
        assert paths[name] == tmp_path / name
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert html.count('<img alt="') == 3 and html.count("data:image/png;base64,") == 3
    for text in ("Parity: native minus R", "Recovery of the simulated truth", "Speed",
                 "not supported", "lme4-laplace-pirls-tolerance", "suite: test"):
        assert text in md and text in html, text
    # the markdown is the source: every table row of it is in the HTML
    n_md_rows = sum(1 for line in md.splitlines() if line.startswith("| ")) - md.count("\n|---")
    assert html.count("<tr>") - html.count("<thead>") == n_md_rows
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(fits)


def test_report_without_pairs_or_truth(fits, tmp_path):
    only_r = fits[fits["engine"] != "glmmbench"].assign(truth=None)
    report.write_report(only_r, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "No native fit has an R counterpart" in md
    assert "No simulated problem" in md
    assert not (tmp_path / "parity.png").exists()
