"""`python -m eval_core ratings`: create, summary, export, import and progress on the quick demo
(campaign "demo": alice and bob, 24 items each), the same numbers as the Rating results page, and
clean one-line errors with exit status 2."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from eval_core.cli import main
from eval_core.rating_exchange import EXPORT_COLUMNS, export_text
from eval_core.rating_setup import campaign_summary, create_campaign, open_rating_store

MODELS = ["checkpoint-6", "checkpoint-24", "checkpoint-36"]
# Files too big to copy and never read by the rating code: the copy keeps the database, config and sets.
HEAVY = shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "*.safetensors",
                               "events.out.*")
IMPORT_CSV = ("item_id,rater,model_a,model_b,winner,category\n"
              "x1,ann,alpha,beta,model_a,billing\n"
              "x1,ben,beta,alpha,model_b,billing\n"
              "x2,ann,beta,gamma,tie,\n"
              "x3,ben,gamma,alpha,model_a,shipping\n")


def _copy(quick_demo: Path, folder: Path) -> Path:
    ws = folder / "ws"
    shutil.copytree(quick_demo, ws, ignore=HEAVY)
    return ws


@pytest.fixture
def ws(quick_demo, tmp_path) -> Path:
    """A private copy of the quick demo, nothing rated."""
    return _copy(quick_demo, tmp_path)


def _verdict(i: int, left: str, right: str) -> str:
    """Deterministic verdicts: the later checkpoint mostly wins, with some upsets, ties and both-bad."""
    if i % 11 == 0:
        return "tie"
    if i % 13 == 0:
        return "both_bad"
    later_left = MODELS.index(left) > MODELS.index(right)
    if i % 5 == 0:  # an upset
        later_left = not later_left
    return "left" if later_left else "right"


@pytest.fixture(scope="module")
def rated(quick_demo, tmp_path_factory) -> Path:
    """A copy of the quick demo with every item of "demo" rated by both raters. Read-only."""
    ws = _copy(quick_demo, tmp_path_factory.mktemp("rated"))
    store = open_rating_store(ws)
    try:
        for i, a in enumerate(store.assignments("demo")):
            scores = {"left": {"helpfulness": 1 + i % 5}, "right": {"helpfulness": 1 + (i * 3) % 5, "tone": 3}}
            assert store.submit("demo", a.token, a.rater, _verdict(i, a.left, a.right), scores)
    finally:
        store.close()
    return ws


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_progress_of_the_demo(ws, capsys):
    assert main(["ratings", "progress", "--workspace", str(ws), "--campaign", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rater", "rated", "assigned", "skipped"]
    assert [line.split() for line in lines[2:]] == [["alice", "0", "24", "0"], ["bob", "0", "24", "0"]]


def test_create_a_campaign_and_its_errors(ws, capsys):
    base = ["ratings", "create", "--workspace", str(ws)]
    c2 = [*base, "--campaign", "c2", "--checkpoint", "checkpoint-6", "--checkpoint", "checkpoint-36",
          "--rater", "ann", "--rater", "ben", "--rater", "cat", "--overlap", "2", "--max-items", "10"]
    assert main(c2) == 0
    assert capsys.readouterr().out == ("campaign 'c2': 10 items of support_test comparing checkpoint-6, checkpoint-36; "
                                       "3 raters, each item seen by 2; seed 12345\n")
    store = open_rating_store(ws)
    try:
        assert len(store.items("c2")) == 10 and len(store.assignments("c2")) == 20
        assert store.campaign("c2").raters == ("ann", "ben", "cat")
    finally:
        store.close()

    assert main(c2) == 2
    assert "a campaign named 'c2' exists" in _error(capsys)
    unknown = [*base, "--campaign", "c3", "--checkpoint", "checkpoint-6", "--checkpoint", "checkpoint-99", "--rater", "ann"]
    assert main(unknown) == 2
    err = _error(capsys)
    assert "no outputs of checkpoint-99" in err and "checkpoints with outputs: checkpoint-6, checkpoint-24, checkpoint-36" in err
    overlap = [*base, "--campaign", "c3", "--checkpoint", "checkpoint-6", "--checkpoint", "checkpoint-36",
               "--rater", "ann", "--rater", "ben", "--rater", "cat", "--overlap", "5"]
    assert main(overlap) == 2
    assert "overlap 5" in _error(capsys)
    store = open_rating_store(ws)
    try:
        assert [c.name for c in store.campaigns()] == ["demo", "c2"]  # the failed creates left nothing
    finally:
        store.close()


def test_summary_json_is_the_pages_record(rated, capsys):
    args = ["ratings", "summary", "--workspace", str(rated), "--format", "json", "--resamples", "50", "--seed", "3"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["schema"], record["version"], record["campaign"]) == ("ftlens.ratings", 1, "demo")
    assert (record["n_judgments"], record["seed"], record["n_resamples"]) == (48, 3, 50)
    strengths = record["bradley_terry"]["strengths"]
    assert sorted(s["model"] for s in strengths) == sorted(MODELS)
    assert [s["rank"] for s in strengths] == [1, 2, 3]
    assert all(s["low"] <= s["strength"] <= s["high"] for s in strengths)
    assert strengths[0]["model"] == "checkpoint-36"  # the later checkpoint mostly wins (see _verdict)
    assert record == campaign_summary(rated, "demo", seed=3, n_resamples=50).to_dict()


def test_summary_table(rated, capsys):
    assert main(["ratings", "summary", "--workspace", str(rated), "--resamples", "50", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Campaign demo: 48 judgments") and "Elo" in out and "Position bias: left wins" in out
    assert all(m in out for m in MODELS)


def test_summary_names_the_campaign_when_there_are_several(ws, capsys):
    assert main(["ratings", "summary", "--workspace", str(ws), "--resamples", "50", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["campaign"] == "demo"  # the only one
    create_campaign(ws, "second", ["checkpoint-6", "checkpoint-24"], ["ann"], overlap=1, max_items=3)
    assert main(["ratings", "summary", "--workspace", str(ws), "--resamples", "50"]) == 2
    assert "name the campaign with --campaign; campaigns: demo, second" in _error(capsys)
    assert main(["ratings", "summary", "--workspace", str(ws), "--campaign", "nope"]) == 2
    assert "no rating campaign named 'nope'; campaigns: demo, second" in _error(capsys)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_export_to_a_file_and_to_stdout(rated, tmp_path, capsys, fmt):
    out = tmp_path / f"ratings.{fmt}"
    assert main(["ratings", "export", "--workspace", str(rated), "--format", fmt, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {out}" in captured.err
    text = out.read_bytes().decode("utf-8")  # as written: the CSV keeps its \r\n row ends
    assert main(["ratings", "export", "--workspace", str(rated), "--format", fmt]) == 0
    assert capsys.readouterr().out == text
    store = open_rating_store(rated)
    try:
        assert text == export_text(store, "demo", fmt)
    finally:
        store.close()
    if fmt == "csv":
        table = list(csv.reader(io.StringIO(text)))
        assert table[0] == list(EXPORT_COLUMNS) and len(table) == 49
    elif fmt == "json":
        rows = json.loads(text)
        assert len(rows) == 48 and {r["rater"] for r in rows} == {"alice", "bob"}
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        # no corrections were written; preferred outputs only, never empty (the quick demo's later
        # checkpoints often answer with nothing, and such a row would teach nothing)
        assert all(r["source"] == "preferred" and r["response"].strip() for r in rows)


def test_export_into_a_missing_folder_is_a_one_line_error(rated, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "ratings.csv"
    assert main(["ratings", "export", "--workspace", str(rated), "--out", str(out)]) == 2
    assert str(out.parent) in _error(capsys)


def test_import_then_summary_progress_and_export_of_the_imported_campaign(ws, tmp_path, capsys):
    path = tmp_path / "judgments.csv"
    path.write_text(IMPORT_CSV, encoding="utf-8")
    args = ["ratings", "import", "--workspace", str(ws), "--campaign", "imported", str(path)]
    assert main(args) == 0
    assert capsys.readouterr().out == "imported 4 judgments into 'imported'\n"
    assert main(args) == 0
    assert capsys.readouterr().out == "imported 0 judgments into 'imported' (4 were already stored)\n"

    assert main(["ratings", "summary", "--workspace", str(ws), "--campaign", "imported", "--format", "json",
                 "--resamples", "50"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["campaign"], record["n_judgments"], record["models"]) == ("imported", 4, ["alpha", "beta", "gamma"])
    assert main(["ratings", "summary", "--workspace", str(ws), "--campaign", "imported", "--resamples", "50"]) == 0
    assert "Campaign imported: 4 judgments" in capsys.readouterr().out

    assert main(["ratings", "progress", "--workspace", str(ws), "--campaign", "imported"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[2:]] == [["ann", "2", "2", "0"], ["ben", "2", "2", "0"]]
    assert main(["ratings", "export", "--workspace", str(ws), "--campaign", "imported", "--format", "jsonl"]) == 0
    assert capsys.readouterr().out == ""  # imported judgments have no texts to learn from


def test_import_errors_are_one_line(ws, tmp_path, capsys):
    assert main(["ratings", "import", "--workspace", str(ws), "--campaign", "demo", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read the judgments file" in _error(capsys)
    bad = tmp_path / "bad.csv"
    bad.write_text(IMPORT_CSV.replace("x2,ann,beta,gamma,tie", "x2,ann,beta,gamma,A"), encoding="utf-8")
    assert main(["ratings", "import", "--workspace", str(ws), "--campaign", "imp", str(bad)]) == 2
    assert f"{bad}:4, field 'winner': winner 'A' is not one of" in _error(capsys)
    good = tmp_path / "good.csv"
    good.write_text(IMPORT_CSV, encoding="utf-8")
    assert main(["ratings", "import", "--workspace", str(ws), "--campaign", "demo", str(good)]) == 2
    assert "import into a new campaign name" in _error(capsys)
    assert main(["ratings", "progress", "--workspace", str(tmp_path / "missing")]) == 2
    assert "not a folder" in _error(capsys)


def test_import_of_a_folder_is_a_one_line_error(ws, tmp_path, capsys):
    assert main(["ratings", "import", "--workspace", str(ws), "--campaign", "imp", str(tmp_path)]) == 2
    assert str(tmp_path) in _error(capsys)


def test_help_lists_ratings_and_its_subcommands(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["--help"])
    assert exc_info.value.code == 0 and "ratings" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc_info:
        main(["ratings", "--help"])
    out = capsys.readouterr().out
    assert exc_info.value.code == 0 and all(c in out for c in ("create", "summary", "export", "import", "progress"))
