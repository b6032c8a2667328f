"""Data page, one test per behaviour in pages/data.py's docstring, on a small workspace with planted
leaks (an exact copy, a near copy, a quoted 13-word span) and clean items that must not be flagged."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from eval_core.data_report import ANALYSIS
from eval_core.results_store import ResultsStore, database_url

PAGE = "pages/data.py"
WORDS = ("order parcel refund invoice lamp chair table delivery courier warehouse account password card bank "
         "transfer label return broken colour size week monday friday email phone store voucher discount "
         "address city tracking number box screw manual assembly guarantee repair").split()
PLANTED = {"h-exact", "h-near", "h-ngram"}


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(n))


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_workspace(root: Path) -> Path:
    """Training: 12 rows in 2 categories. Held-out: 3 planted leaks, 4 clean rows, a category
    ("warranty") that training lacks, and a row whose id and category are markup."""
    rng = random.Random(7)
    train = [{"id": f"t{i:02d}", "category": "orders" if i % 2 else "billing", "prompt": _text(rng, 8),
              "response": _text(rng, 70)} for i in range(12)]
    near_words = train[3]["response"].split()
    near_words[-1] = "changed999"
    quoted = " ".join(train[5]["response"].split()[10:26])
    held = [
        {"id": "h-exact", "category": "billing", "prompt": train[2]["prompt"].upper(),
         "reference": train[2]["response"] + " !!"},
        {"id": "h-near", "category": "orders", "prompt": train[3]["prompt"], "reference": " ".join(near_words)},
        {"id": "h-ngram", "category": "orders", "prompt": _text(rng, 8),
         "reference": f"{_text(rng, 10)} {quoted} {_text(rng, 10)}"},
        *[{"id": f"h-clean-{i}", "category": "warranty" if i == 0 else "billing", "prompt": _text(rng, 8),
           "reference": _text(rng, 40)} for i in range(4)],
        {"id": "<b>x</b>", "category": "[link](http://x)", "prompt": _text(rng, 8), "reference": _text(rng, 30)},
    ]
    _jsonl(root / "train_data" / "support_train.jsonl", train)
    _jsonl(root / "heldout" / "support_test.jsonl", held)
    (root / "ftlens.toml").write_text("", encoding="utf-8")
    return root


@pytest.fixture
def ws(tmp_path) -> Path:
    return make_workspace(tmp_path / "ws")


def frame(at, column: str):
    """The table with this column (AppTest finds dataframes by position, not by key)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def open_page(app, monkeypatch, workspace, timeout: float = 60):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app(timeout).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_without_a_training_set_says_where_to_put_one(app, monkeypatch, tmp_path):
    _jsonl(tmp_path / "heldout" / "a.jsonl", [{"id": "1", "prompt": "p", "reference": "r"}])
    (tmp_path / "ftlens.toml").write_text("", encoding="utf-8")
    at = open_page(app, monkeypatch, tmp_path)
    assert at.title[0].value == "Data" and not at.error
    assert "[[training_sets]]" in at.info[0].value and "train_data/" in at.info[0].value


def test_the_overlap_table_lists_exactly_the_planted_leaks(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    (row,) = frame(at, "contaminated ids").to_dict("records")
    assert set(row["contaminated ids"].split(", ")) == PLANTED
    assert (row["contaminated"], row["exact"], row["near"], row["held-out rows"]) == (3, 1, 1, 8)
    assert "support_test ← support_train: 3 item(s)" in at.warning[0].value.replace("\\", "")


def test_each_leak_says_how_it_was_found_and_shows_both_texts_literally(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    leaks = {r["held-out id"]: r for r in frame(at, "found by").to_dict("records")}
    assert set(leaks) == PLANTED
    assert "exact duplicate" in leaks["h-exact"]["found by"] and leaks["h-exact"]["training id"] == "t02"
    assert leaks["h-near"]["found by"].startswith("near duplicate") and leaks["h-near"]["training id"] == "t03"
    assert leaks["h-near"]["Jaccard"] >= 0.8
    assert leaks["h-ngram"]["found by"] == "13-gram overlap" and leaks["h-ngram"]["training id"] == "t05"
    at.selectbox(key="data_leak_example").set_value("h-near").run()
    held, train = (c.value for c in at.code[:2])
    assert held.endswith("changed999") and "t03" in at.caption[1].value
    train_rows = [json.loads(x) for x in (ws / "train_data" / "support_train.jsonl").read_text().splitlines()]
    assert train == train_rows[3]["prompt"] + "\n" + train_rows[3]["response"]


def test_results_are_kept_in_the_store_and_read_back(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    store = ResultsStore(database_url(ws, None))
    try:
        with store._reading() as conn:
            import sqlalchemy as sa

            from eval_core.results_store import analyses
            rows = conn.execute(sa.select(analyses.c.analysis)).all()
    finally:
        store.close()
    assert [r[0] for r in rows] == [ANALYSIS]
    assert any("computed now" in e.value for e in at.caption)
    at2 = open_page(app, monkeypatch, ws)  # a new session: read back, not recomputed
    assert any("read from" in e.value for e in at2.caption)
    assert not at2.get("status")


def test_a_longer_ngram_keeps_only_whole_copies(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.toggle(key="data_near").set_value(False).run()
    at.number_input(key="data_ngram").set_value(100).run()  # every item is shorter: one gram, the whole text
    (row,) = frame(at, "contaminated ids").to_dict("records")
    assert row["contaminated ids"] == "h-exact" and row["near"] == 0


def test_balance_lengths_duplicates_and_diversity(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    gaps = frame(at, "status").to_dict("records")
    assert {(g["category"], g["status"]) for g in gaps} == {("warranty", "missing"), ("[link](http://x)", "missing")}
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    balance = next(c for c in charts if "Category balance" in c["layout"]["title"]["text"])
    assert "warranty" in balance["data"][1]["x"] and balance["data"][1]["y"][balance["data"][1]["x"].index("warranty")] == 1 / 8
    assert any("Lengths in tokens" in c["layout"]["title"]["text"] for c in charts)
    assert "No duplicates within either set." in [s.value for s in at.success]
    sets = frame(at, "distinct-1")["set"].tolist()
    assert sets == ["support_train", "support_test"]


def test_markup_in_ids_and_categories_stays_text(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert "[link](http://x)" in charts[0]["data"][1]["x"]  # a category name: plain text, not a link
    assert "<b>" not in json.dumps(charts)
    assert not any("<b>" in m.value for m in at.markdown)


def test_on_the_demo_the_data_page_lists_exactly_the_planted_leaks(app, monkeypatch, quick_demo, tmp_path):
    import shutil

    ws = tmp_path / "demo"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "*.safetensors"))
    planted = {p["id"] for p in json.loads((ws / ".ftlens" / "demo_build.json").read_text())["planted_leaks"]}
    at = open_page(app, monkeypatch, ws)
    rows = {r["held-out set"]: r for r in frame(at, "contaminated ids").to_dict("records")}
    assert set(rows) == {"support_test", "general_text", "general_knowledge", "support_test_leak_check"}
    assert set(rows["support_test_leak_check"]["contaminated ids"].split(", ")) == planted and len(planted) == 6
    assert all(rows[name]["contaminated"] == 0 for name in ("support_test", "general_text", "general_knowledge"))
    assert at.selectbox(key="data_pair").value.endswith("support_test_leak_check")  # the leaking pair first
    assert set(frame(at, "found by")["held-out id"]) == planted
