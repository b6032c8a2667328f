"""The evaluation report (`ftlens.report`): its numbers are the stored results' (equal to what
`results`/`forgetting`/`ratings summary` give), untrusted text stays text in Markdown and CSV, and
the `report` command writes json, md and a zip of CSVs."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import zipfile

import pytest

from eval_core.cli import main
from eval_core.metric_tables import load_dataset_results, metric_table
from eval_core.rating_setup import campaign_summary, create_campaign, open_rating_store
from eval_core.report_model import SECTIONS, build_report
from eval_core.report_render import md_text, to_csv_zip, to_json, to_markdown

PAYLOAD = '<script>alert(1)</script><img src=x onerror=alert(2)> | =HYPERLINK("http://evil") [x](javascript:alert(3))'


@pytest.fixture(scope="module")
def ws(probed_demo, tmp_path_factory):
    """The probed demo with a rated campaign and one output replaced by a hostile payload."""
    dst = tmp_path_factory.mktemp("report") / "ws"
    shutil.copytree(probed_demo, dst)
    create_campaign(dst, "team", ["base", "checkpoint-6", "checkpoint-36"], ["ann", "ben"], overlap=2, max_items=12)
    with open_rating_store(dst) as store:
        for rater in ("ann", "ben"):
            while (item := store.next_item("team", rater)) is not None:
                store.submit("team", item.token, rater, "left" if len(item.left_text) >= len(item.right_text) else "right")
    (results,) = load_dataset_results(dst)
    last = results.checkpoint("checkpoint-36")
    with sqlite3.connect(dst / ".ftlens" / "results.sqlite") as db:  # every stored output of the last checkpoint
        db.execute("UPDATE generations SET text = ? WHERE checkpoint_fp = ? AND dataset = 'support_test'",
                   (PAYLOAD, last.fingerprint))
    return dst


@pytest.fixture(scope="module")
def report(ws):
    return build_report(ws, seed=3, n_resamples=50)


def test_numbers_equal_the_cli_records(ws, report, capsys):
    d = json.loads(to_json(report))
    assert (d["schema"], d["version"], d["sections"]) == ("ftlens.report", 1, list(SECTIONS))
    # ratings: the `ratings summary` record with the report's seed and resamples
    assert d["ratings"] == [campaign_summary(ws, "team", seed=3, n_resamples=50).to_dict()]
    # forgetting: the `forgetting --format json` record
    assert main(["forgetting", "--workspace", str(ws), "--format", "json"]) == 0
    assert d["forgetting"] == json.loads(capsys.readouterr().out)
    # metrics: metric_table's intervals, whole set and per category
    (results,) = load_dataset_results(ws)
    expected = {(r.checkpoint, r.metric, r.category): (r.interval.value, r.interval.low, r.interval.high)
                for by_cat in (False, True) for r in metric_table(results, by_category=by_cat, seed=3, n_resamples=50)}
    got = {(m["checkpoint"], m["metric"], m["category"]): (m["value"], m["low"], m["high"]) for m in d["metrics"]}
    assert set(got) == set(expected)
    for key, (v, lo, hi) in expected.items():
        if v == v:  # not NaN
            assert got[key] == pytest.approx((v, lo, hi))
    s = d["summary"]
    assert s["recommended_checkpoint"] == d["forgetting"]["recommendation"]["checkpoint"]
    assert s["top_rated"][0]["checkpoint"] == d["ratings"][0]["bradley_terry"]["strengths"][0]["model"]
    assert {c["name"] for c in d["workspace"]["checkpoints"]} >= {"base", "checkpoint-6", "checkpoint-36"}
    assert any(c["metric"] == "eval_support_loss" for c in d["curves"])


def test_examples_hold_best_worst_and_rater_disagreements(ws, report):
    kinds = {e["kind"] for e in report.examples}
    assert {"best", "worst"} <= kinds
    with open_rating_store(ws) as store:
        rows = store.ratings_of("team")
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], set()).add(r["model_left"] if r["verdict"] == "left" else r["model_right"])
    split = sorted(i for i, picks in by_item.items() if len(picks) > 1)
    shown = [e for e in report.examples if e["kind"] == "disagreement (team)"]
    assert [e["id"] for e in shown] == split[:3]
    assert all(e["output"].startswith("ann: ") and "; ben: " in e["output"] for e in shown)
    assert report.curve_points and {p["metric"] for p in report.curve_points} >= {"loss", "eval_support_loss"}


def test_untrusted_text_stays_text_in_markdown(report):
    md = to_markdown(report)
    import re

    assert not re.search(r"(?<!\\)<", md)  # every < is escaped: no tag can open
    assert not re.search(r"(?<!\\)\]\(", md)  # no link can form
    assert md_text(PAYLOAD) in md  # the payload is there, escaped
    assert "\\<script\\>alert(1)\\</script\\>" in md


def test_csv_tables_defuse_formulas(report):
    with zipfile.ZipFile(io.BytesIO(to_csv_zip(report))) as z:
        names = set(z.namelist())
        assert {"metrics.csv", "curves.csv", "forgetting.csv", "ratings.csv", "examples.csv", "report.json"} <= names
        rows = list(csv.DictReader(io.StringIO(z.read("examples.csv").decode())))
    outputs = [r["output"] for r in rows if r["checkpoint"] == "checkpoint-36"]
    assert outputs and all(o == PAYLOAD for o in outputs)  # starts with '<': not a formula, kept as is
    assert defused_cell("=1+1") == "'=1+1"


def defused_cell(value: str) -> str:
    from eval_core.report_render import _csv

    return next(csv.reader(io.StringIO(_csv([{"x": value}]).splitlines()[1])))[0]


def test_sections_can_be_chosen(ws):
    r = build_report(ws, ["metrics"], n_resamples=20)
    assert r.sections == ["metrics"] and r.metrics and r.forgetting is None and r.ratings == [] and r.curves == []
    with pytest.raises(Exception, match="unknown report section"):
        build_report(ws, ["metrics", "nope"])


@pytest.mark.parametrize("fmt", ["json", "md", "csv"])
def test_report_command_writes_each_format(ws, tmp_path, capsys, fmt):
    out = tmp_path / f"report.{fmt}"
    assert main(["report", "--workspace", str(ws), "--format", fmt, "--out", str(out), "--resamples", "20",
                 "--sections", "summary,metrics"]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    data = out.read_bytes()
    if fmt == "json":
        assert json.loads(data)["sections"] == ["summary", "metrics"]
    elif fmt == "md":
        assert data.decode().startswith("# Evaluation report: ")
    else:
        assert zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_report_command_errors_are_one_line(ws, tmp_path, capsys):
    assert main(["report", "--workspace", str(ws), "--format", "md", "--out", str(tmp_path / "r.md"),
                 "--sections", "metrics,bogus"]) == 2
    assert "unknown report section(s) bogus" in capsys.readouterr().err
    assert main(["report", "--workspace", str(ws), "--format", "md", "--out", str(tmp_path / "no" / "r.md"),
                 "--sections", "metrics"]) == 2


def test_html_is_self_contained_and_escapes_untrusted_text(report):
    import re

    from eval_core.report_html import to_html

    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page
    # no external script, stylesheet, font or image: everything is inline
    from plotly.offline import get_plotlyjs

    ours = page.replace(get_plotlyjs(), "")  # plotly.js itself holds URL strings (map tiles, its logo link)
    assert not re.search(r"<script[^>]+src=", ours) and "<link" not in ours
    assert not re.search(r"""(?:src|href)=["']?https?:""", ours)
    assert "default-src 'none'" in page  # and the page forbids fetching anything
    # the hostile output is text: its tags are escaped, only our own <script> elements exist
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<img" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")


def test_pdf_is_printed_by_chromium(report, tmp_path):
    from eval_core.report_html import to_pdf

    pdf = to_pdf(build_report_small(report))
    assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000


def build_report_small(report):
    from dataclasses import replace

    return replace(report, examples=report.examples[:2])


def test_markdown_with_png_charts(ws, tmp_path, capsys):
    out = tmp_path / "team" / "report.md"
    assert main(["report", "--workspace", str(ws), "--format", "md", "--charts", "--out", str(out), "--resamples", "20"]) == 0
    pngs = sorted((tmp_path / "team" / "report_charts").glob("*.png"))
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    md = out.read_text()
    for p in pngs:
        assert f"](report_charts/{p.name})" in md
    assert main(["report", "--workspace", str(ws), "--format", "json", "--charts", "--out", str(tmp_path / "r.json")]) == 2
    assert "--charts writes PNG charts beside a Markdown report" in capsys.readouterr().err


def test_metric_values_equal_the_results_command(ws, capsys):
    """With the results command's bootstrap settings (seed 12345, 1000 resamples), the report's
    whole-set text metrics are the `results --format json` values and intervals."""
    assert main(["results", "--workspace", str(ws), "--format", "json", "--no-examples"]) == 0
    rep = build_report(ws, ["metrics"])
    got = {(m["dataset"], m["checkpoint"], m["metric"]): m for m in rep.metrics if m["category"] is None}
    generation_sets = {m["dataset"] for m in rep.metrics}  # probe scores are in the forgetting section
    cells = [c for c in json.loads(capsys.readouterr().out)["results"] if "ci_low" in c and c["dataset"] in generation_sets]
    assert cells
    for c in cells:
        m = got[(c["dataset"], c["checkpoint"], c["metric"])]
        assert (m["value"], m["low"], m["high"]) == pytest.approx((c["value"], c["ci_low"], c["ci_high"]))
        assert m["signature"] == c["signature"]
