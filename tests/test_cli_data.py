"""`python -m eval_core data`: training sets in the workspace (config and discovery), planted leaks
found with the training row they come from, clean sets not flagged, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_core.cli import main
from eval_core.errors import WorkspaceError
from eval_core.workspace import discover_workspace
from eval_core.workspace_config import parse_workspace_config

TRAIN = [
    {"id": "t1", "category": "orders", "prompt": "Where is my order number 1234? It was due last Monday and nothing came.",
     "response": "Orders ship within two working days; the tracking link in your confirmation e-mail shows where it is now."},
    {"id": "t2", "category": "billing", "prompt": "Why was I charged twice for the same lamp this month?",
     "response": "A second charge is usually a card pre-authorisation that disappears within five days without any action."},
    {"id": "t3", "category": "orders", "prompt": "Can I change the delivery address after ordering?",
     "response": "Yes, until the parcel leaves the warehouse: open the order in your account and pick Change address."},
]
HELDOUT = [
    # a leak: the training answer reused word for word inside a longer reference
    {"id": "h1", "category": "orders", "prompt": "My parcel is late, where is it?",
     "reference": "Sorry for the wait! Orders ship within two working days; the tracking link in your confirmation "
                  "e-mail shows where it is now."},
    {"id": "h2", "category": "returns", "prompt": "How do I return a lamp that arrived broken?",
     "reference": "Send us a photo of the damage and we will e-mail a prepaid return label the same day."},
    {"id": "h3", "category": "billing", "prompt": "Do you accept payment by bank transfer for large orders?",
     "reference": "For orders above 500 euros we can send an invoice payable by bank transfer within thirty days."},
]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def ws(tmp_path) -> Path:
    _jsonl(tmp_path / "heldout" / "support_test.jsonl", HELDOUT)
    _jsonl(tmp_path / "train_data" / "support_train.jsonl", TRAIN)
    (tmp_path / "ftlens.toml").write_text("", encoding="utf-8")
    return tmp_path


def test_training_sets_are_discovered_in_train_data_and_not_scored_as_heldout(ws):
    summary = discover_workspace(ws)
    assert [d.name for d in summary.training_sets] == ["support_train"]
    assert summary.training_sets[0].path == "train_data/support_train.jsonl"
    assert [d.name for d in summary.datasets] == ["support_test"]  # the training file is not a held-out set


def test_the_planted_leak_is_found_with_its_training_row_and_clean_items_are_not(ws, capsys):
    assert main(["data", "--workspace", str(ws)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "ftlens.data_report" and report["text_roles"]["generation"] == ["prompt", "reference"]
    (pair,) = report["pairs"]
    assert (pair["training_set"], pair["heldout_set"], pair["schema"]) == ("support_train", "support_test", "ftlens.data")
    c = pair["contamination"]
    assert c["contaminated_ids"] == ["h1"]
    assert [(o["heldout_id"], o["train_id"]) for o in c["overlaps"]] == [("h1", "t1")]
    assert c["protocol"]["ngram_n"] == 13
    assert {g["category"] for g in pair["coverage_gaps"]} == {"returns"}  # held-out category absent from training
    assert main(["data", "--workspace", str(ws), "--format", "table", "--no-near"]) == 0
    table = capsys.readouterr().out
    assert "support_train" in table and "h1" in table and "h2" not in table


def test_training_sets_from_the_config(ws, capsys):
    (ws / "other").mkdir()
    (ws / "train_data" / "support_train.jsonl").rename(ws / "other" / "ft.jsonl")
    (ws / "ftlens.toml").write_text('[[datasets]]\nname = "test"\npath = "heldout/support_test.jsonl"\n\n'
                                    '[[training_sets]]\nname = "ft"\npath = "other/ft.jsonl"\n', encoding="utf-8")
    config = parse_workspace_config(ws / "ftlens.toml")
    assert [t.name for t in config.training_sets] == ["ft"]
    assert main(["data", "--workspace", str(ws), "--ngram", "8"]) == 0
    (pair,) = json.loads(capsys.readouterr().out)["pairs"]
    assert pair["training_set"] == "ft" and pair["contamination"]["contaminated_ids"] == ["h1"]
    assert pair["contamination"]["protocol"]["ngram_n"] == 8


@pytest.mark.parametrize(("toml", "field"), [
    ('[[training_sets]]\nname = "x"\n', "training_sets[0].path"),
    ('[[training_sets]]\npath = "../outside.jsonl"\n', "training_sets[0].path"),
    ('training_sets = [1]\n', "training_sets[0]"),
    ('[[training_sets]]\npath = "a.jsonl"\ncolums = {}\n', "training_sets[0].colums"),
])
def test_bad_training_set_entries_name_the_field(tmp_path, toml, field):
    (tmp_path / "ftlens.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(WorkspaceError) as err:
        parse_workspace_config(tmp_path / "ftlens.toml")
    assert err.value.field == field and err.value.line is not None


def test_without_a_training_set_it_says_where_to_put_one(tmp_path, capsys):
    _jsonl(tmp_path / "heldout" / "support_test.jsonl", HELDOUT)
    (tmp_path / "ftlens.toml").write_text("", encoding="utf-8")
    assert main(["data", "--workspace", str(tmp_path)]) == 2
    assert "train_data/" in capsys.readouterr().err
    assert main(["data", "--workspace", str(tmp_path), "--ngram", "0"]) == 2
    assert "--ngram 0" in capsys.readouterr().err


def test_the_schema_document_names_every_field(ws, capsys):
    assert main(["data", "--workspace", str(ws)]) == 0
    report = json.loads(capsys.readouterr().out)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data-schema.md").read_text(encoding="utf-8")
    keys = set(report)
    for pair in report["pairs"]:
        keys |= set(pair) | set(pair["contamination"]) | set(pair["contamination"]["protocol"])
        for field in ("balance", "coverage_gaps", "lengths", "diversity", "negatives"):
            for row in pair[field]:
                keys |= set(row)
        for row in pair["contamination"]["overlaps"] + pair["contamination"]["exact"]:
            keys |= set(row)
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert missing == []
