"""Ratings in and out (eval_core.rating_exchange): the judgments CSV import with errors that name the
file, line and field and store nothing; idempotent re-import; spreadsheet-safe CSV export; the
export's columns (model_a is the LEFT output); the human-in-the-loop fine-tuning rows; the
`ftlens.ratings` JSON.

Expected values come from docs/ratings-schema.md (columns, winner mapping, jsonl rules) and the
OWASP "CSV injection" advice the module follows (= + - @ tab CR get a leading apostrophe).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from eval_core.errors import EvalCoreError
from eval_core.rating_analysis import summarise
from eval_core.rating_exchange import (
    EXPORT_COLUMNS,
    defuse,
    export_rows,
    export_text,
    finetune_rows,
    import_judgments,
    iter_csv,
    parse_judgments_csv,
    read_judgments_csv,
    summary_json,
)
from eval_core.rating_setup import open_rating_store
from eval_core.rating_store import RatingStore, judgments_and_scores

HEADER = "item_id,rater,model_a,model_b,winner,category\n"
VALID = HEADER + (
    "i1,ann,m1,m2,model_a,billing\n"
    "i1,ben,m2,m1,model_b,billing\n"
    "i2,ann,m2,m3,tie,\n"
    "i3,ben,m3,m1,both_bad,shipping\n"
)
# Files too big to copy and never read by the rating code: the copy keeps the database, config and sets.
HEAVY = shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "*.safetensors",
                               "events.out.*")


@pytest.fixture
def store(store_url):
    """An empty rating store, on SQLite and on PostgreSQL (each test using it runs on both)."""
    s = RatingStore(store_url)
    yield s
    s.close()


@pytest.fixture
def demo_ws(quick_demo, tmp_path) -> Path:
    """A private copy of the quick demo (campaign "demo": alice and bob, 24 items each, nothing rated)."""
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=HEAVY)
    return ws


@pytest.fixture
def demo_store(demo_ws):
    s = open_rating_store(demo_ws)
    yield s
    s.close()


def _write(tmp_path: Path, text: str | bytes, name: str = "judgments.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- import ----------------------------------------------------------------------------------------


def test_import_into_a_new_campaign_is_stored_once_and_extends_models_and_raters(store, tmp_path):
    path = _write(tmp_path, VALID)
    assert import_judgments(store, "ext", path) == (4, 0)
    spec = store.campaign("ext")
    assert spec.imported and spec.dataset == "(imported)" and spec.overlap == 1
    assert spec.models == ("m1", "m2", "m3") and spec.raters == ("ann", "ben")
    rows = {(r["item_id"], r["rater"]): r for r in store.ratings_of("ext")}
    assert len(rows) == 4
    # model_a is the left output; winner model_a/model_b -> left/right (docs/ratings-schema.md)
    r = rows[("i1", "ben")]
    assert (r["model_left"], r["model_right"], r["verdict"], r["category"]) == ("m2", "m1", "right", "billing")
    assert rows[("i1", "ann")]["verdict"] == "left"
    assert rows[("i2", "ann")]["verdict"] == "tie" and rows[("i2", "ann")]["category"] is None  # empty category
    assert rows[("i3", "ben")]["verdict"] == "both_bad"
    assert {r["source"] for r in rows.values()} == {"import:judgments.csv"}
    assert all(r["scores"] == {} and r["comment"] == "" and r["correction"] == "" for r in rows.values())
    assert store.items("ext") == {}  # imported judgments have no texts

    # the same file again: nothing new, everything counted as already stored
    assert import_judgments(store, "ext", path) == (0, 4)
    assert len(store.ratings_of("ext")) == 4

    # a second file naming a new model and a new rater extends the campaign record
    more = _write(tmp_path, HEADER + "i1,cy,m1,m4,model_b,billing\ni9,ann,m4,m3,model_a,\n", "more.csv")
    assert import_judgments(store, "ext", more) == (2, 0)
    spec = store.campaign("ext")
    assert spec.models == ("m1", "m2", "m3", "m4") and spec.raters == ("ann", "ben", "cy")
    assert len(store.ratings_of("ext")) == 6


def test_import_of_uploaded_bytes_with_bom_crlf_and_no_category_column(store):
    data = ("\ufeffitem_id,rater,model_a,model_b,winner\r\n"
            " i1 , ann ,m1,m2,model_b\r\n"
            "\r\n"  # a blank line is skipped
            "i2,ann,m1,m2,tie\r\n").encode()
    rows = parse_judgments_csv(data, "upload.csv")
    assert rows == [
        {"item_id": "i1", "rater": "ann", "model_a": "m1", "model_b": "m2", "winner": "model_b", "category": None},
        {"item_id": "i2", "rater": "ann", "model_a": "m1", "model_b": "m2", "winner": "tie", "category": None},
    ]
    assert import_judgments(store, "up", "upload.csv", data=data) == (2, 0)
    assert {r["source"] for r in store.ratings_of("up")} == {"import:upload.csv"}


# (file text, 1-based line, field, words of the message). Each file has exactly one fault.
BAD_FILES = [
    pytest.param("item_id,rater,model_a,model_b,category\ni1,ann,m1,m2,x\n", 1, "winner", "the header lacks winner",
                 id="missing-header-column"),
    pytest.param("", 1, "item_id", "the header lacks item_id", id="empty-file"),
    pytest.param(HEADER + "i1,ann,m1,m2,model_a,\ni2,,m1,m2,model_a,\n", 3, "rater", "'rater' is empty",
                 id="empty-rater"),
    pytest.param(HEADER + "i1,ann,m1,m2,A,\n", 2, "winner", "winner 'A' is not one of model_a, model_b, tie, both_bad",
                 id="winner-A"),
    pytest.param(HEADER + "i1,ann,m1,m2,model_a,\ni2,ann,m3,m3,tie,\n", 3, "model_b", "the same model",
                 id="same-model"),
    pytest.param(HEADER + "i1,ann,m1,m2,model_a,\ni2,ann,m1,m2,tie,\ni1,ann,m2,m1,model_b,\n", 4, "item_id",
                 "item i1 is judged twice by ann (also line 2)", id="judged-twice"),
    pytest.param(HEADER + "i1,ann,m1,m2,model_a,\ni2,ann,m1,m2,tie,cat,extra\n", 3, None,
                 "more cells than the 6 columns of the header", id="more-cells"),
    pytest.param(HEADER + "i1,ann,m1,m2\n", 2, "winner", "'winner' is empty", id="fewer-cells"),
    pytest.param(HEADER + "i1,bad/name,m1,m2,model_a,\n", 2, "rater", "is not a valid name", id="bad-rater-name"),
    pytest.param(HEADER, 1, None, "no judgments: the file has a header but no rows", id="header-only"),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD_FILES)
def test_bad_files_name_file_line_and_field_and_store_nothing(store, tmp_path, text, line, field, message):
    path = _write(tmp_path, text)
    with pytest.raises(EvalCoreError) as exc_info:
        import_judgments(store, "bad", path)
    exc = exc_info.value
    assert exc.path == str(path) and exc.line == line and message in exc.message
    if field is not None:
        assert exc.field == field
    assert str(exc).startswith(f"{path}:{line}")
    assert store.campaigns() == [] and store.ratings_of("bad") == []
    with pytest.raises(EvalCoreError, match="no rating campaign named 'bad'"):
        store.campaign("bad")


def test_non_utf8_file_is_refused_and_nothing_stored(store, tmp_path):
    path = _write(tmp_path, HEADER.encode() + b"i1,ann,m1,m2,model_a,caf\xe9\n")  # Latin-1 e-acute
    with pytest.raises(EvalCoreError, match="not UTF-8 text") as exc_info:
        import_judgments(store, "bad", path)
    assert exc_info.value.path == str(path) and "save the CSV as UTF-8" in exc_info.value.message
    assert store.campaigns() == [] and store.ratings_of("bad") == []


def test_non_utf8_error_names_the_line(tmp_path):
    path = _write(tmp_path, HEADER.encode() + b"i1,ann,m1,m2,model_a,ok\ni2,ann,m1,m2,tie,caf\xe9\n")
    with pytest.raises(EvalCoreError) as exc_info:
        read_judgments_csv(path)
    assert exc_info.value.line == 3


def test_missing_file_and_bad_campaign_name(store, tmp_path):
    with pytest.raises(EvalCoreError, match="cannot read the judgments file") as exc_info:
        read_judgments_csv(tmp_path / "nope.csv")
    assert exc_info.value.path == str(tmp_path / "nope.csv")
    with pytest.raises(EvalCoreError, match="is not a valid name"):
        import_judgments(store, "bad/name", _write(tmp_path, VALID))
    assert store.campaigns() == []


def test_import_into_an_app_campaign_is_refused(demo_store, tmp_path):
    before = demo_store.campaign("demo")
    path = _write(tmp_path, HEADER + "sup1-0019,alice,checkpoint-6,checkpoint-36,model_a,\n")
    with pytest.raises(EvalCoreError, match="import into a new campaign name") as exc_info:
        import_judgments(demo_store, "demo", path)
    assert exc_info.value.field == "campaign"
    assert demo_store.ratings_of("demo") == [] and demo_store.campaign("demo") == before


# --- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+x", "'+x"),
        ("-x", "'-x"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
        ("x", "x"),
        ("x=1", "x=1"),  # only the first character counts
        ("", ""),
        (3, 3),
        (-1.5, -1.5),  # numbers are numbers, not formulas
        ("-1.5", "-1.5"),
        ("-Infinity", "-Infinity"),
        ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
        (None, None),
    ],
)
def test_defuse(cell, expected):
    assert defuse(cell) == expected


def _stored(**kw) -> dict:
    """A stored rating row as RatingStore.ratings_of returns it."""
    row = {"campaign": "c", "item_id": "i1", "rater": "ann", "model_left": "m-left", "model_right": "m-right",
           "verdict": "left", "scores": {}, "comment": "", "correction": "", "category": "billing", "source": "app",
           "created_at": 1700000000.5}
    return {**row, **kw}


@pytest.mark.parametrize(("verdict", "winner"), [("left", "model_a"), ("right", "model_b"), ("tie", "tie"),
                                                 ("both_bad", "both_bad")])
def test_export_rows_model_a_is_the_left_output(verdict, winner):
    row = _stored(verdict=verdict, scores={"left": {"tone": 4}, "right": {"tone": 2, "helpfulness": 1}})
    (out,) = export_rows([row])
    assert list(out) == list(EXPORT_COLUMNS)
    assert (out["model_a"], out["model_b"], out["winner"]) == ("m-left", "m-right", winner)
    assert out["scores_a"] == {"tone": 4} and out["scores_b"] == {"tone": 2, "helpfulness": 1}
    assert export_rows([_stored(scores={"left": {"tone": 3}})])[0]["scores_b"] == {}


def test_iter_csv_of_no_rows_is_the_header():
    assert list(csv.reader(io.StringIO("".join(iter_csv([]))))) == [list(EXPORT_COLUMNS)]


def _rate(store: RatingStore, rater: str, item_id: str, verdict: str, scores: dict | None = None, comment: str = "",
          correction: str = "") -> None:
    (a,) = [a for a in store.assignments("demo", rater) if a.item_id == item_id]
    assert store.submit("demo", a.token, rater, verdict, scores, comment, correction)


def _sides(store: RatingStore) -> dict[tuple[str, str], tuple[str, str]]:
    """(item, rater) -> (left model, right model) as that rater sees it."""
    return {(a.item_id, a.rater): (a.left, a.right) for a in store.assignments("demo")}


def test_csv_and_json_export_of_stored_ratings(demo_store):
    ids = sorted(demo_store.items("demo"))
    sides = _sides(demo_store)
    evil = '=HYPERLINK("http://evil")'
    _rate(demo_store, "alice", ids[0], "left", {"left": {"helpfulness": 4}, "right": {"helpfulness": 2, "tone": 5}},
          comment=evil)
    _rate(demo_store, "alice", ids[1], "right")
    _rate(demo_store, "alice", ids[2], "tie", comment="  plain  ")
    _rate(demo_store, "bob", ids[0], "both_bad", correction="-a better answer")

    exported = json.loads(export_text(demo_store, "demo", "json"))
    by_key = {(r["item_id"], r["rater"]): r for r in exported}
    assert len(exported) == 4 and all(list(r) == list(EXPORT_COLUMNS) for r in exported)
    first = by_key[(ids[0], "alice")]
    assert (first["model_a"], first["model_b"]) == sides[(ids[0], "alice")]
    assert first["winner"] == "model_a" and first["comment"] == evil  # JSON keeps the text as it is
    assert first["scores_a"] == {"helpfulness": 4} and first["scores_b"] == {"helpfulness": 2, "tone": 5}
    assert first["category"] == demo_store.items("demo")[ids[0]].category and first["source"] == "app"
    assert by_key[(ids[1], "alice")]["winner"] == "model_b"
    assert by_key[(ids[1], "alice")]["model_a"] == sides[(ids[1], "alice")][0]
    assert by_key[(ids[2], "alice")]["winner"] == "tie" and by_key[(ids[2], "alice")]["comment"] == "plain"
    assert by_key[(ids[0], "bob")]["winner"] == "both_bad"
    assert by_key[(ids[0], "bob")]["correction"] == "-a better answer"
    assert by_key[(ids[0], "bob")]["scores_a"] == {} and by_key[(ids[0], "bob")]["scores_b"] == {}

    table = list(csv.reader(io.StringIO(export_text(demo_store, "demo", "csv"))))
    assert table[0] == list(EXPORT_COLUMNS) and len(table) == 5
    cells = {(r[1], r[2]): dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in table[1:]}
    row = cells[(ids[0], "alice")]
    assert row["comment"] == "'" + evil  # a spreadsheet shows it as text, never runs it
    assert row["winner"] == "model_a" and row["model_a"] == sides[(ids[0], "alice")][0]
    assert json.loads(row["scores_a"]) == {"helpfulness": 4}
    assert json.loads(row["scores_b"]) == {"helpfulness": 2, "tone": 5}
    assert cells[(ids[0], "bob")]["correction"] == "'-a better answer"
    assert cells[(ids[0], "bob")]["scores_a"] == "{}"
    assert float(row["created_at"]) == first["created_at"]

    with pytest.raises(EvalCoreError, match="export format 'xml' is not one of csv, json, jsonl"):
        export_text(demo_store, "demo", "xml")


def test_finetune_rows_corrections_and_agreed_preferences(demo_store):
    items = demo_store.items("demo")
    sides = _sides(demo_store)
    # items whose two compared outputs differ, so "the preferred output" names one text
    ids = sorted(i for i, it in items.items() if len({it.outputs[m] for m in sides[(i, "alice")]}) == 2)
    assert len(ids) >= 5, "the quick demo should have items whose compared outputs differ"
    fixed, agreed, split, tied, bad = ids[:5]

    def pick(item_id: str, rater: str, model: str) -> str:
        """The verdict by which `rater` picks `model` on `item_id` (sides differ per rater)."""
        left, right = sides[(item_id, rater)]
        return {left: "left", right: "right"}[model]

    # a correction wins over any verdict: one row per correcting rater
    _rate(demo_store, "alice", fixed, "left", correction="  Descale it monthly with citric acid.  ")
    _rate(demo_store, "bob", fixed, "right")
    # both raters picked the same model, whatever side each saw it on
    chosen = max(sides[(agreed, "alice")], key=lambda m: len(items[agreed].outputs[m]))  # the non-empty one
    _rate(demo_store, "alice", agreed, pick(agreed, "alice", chosen))
    _rate(demo_store, "bob", agreed, pick(agreed, "bob", chosen))
    # the raters disagree: no row
    a_left, a_right = sides[(split, "alice")]
    _rate(demo_store, "alice", split, pick(split, "alice", a_left))
    _rate(demo_store, "bob", split, pick(split, "bob", a_right))
    # a tie and a "both bad" give no row, even beside a clear pick
    _rate(demo_store, "alice", tied, "tie")
    _rate(demo_store, "bob", tied, "tie")
    _rate(demo_store, "alice", bad, "both_bad")
    _rate(demo_store, "bob", bad, pick(bad, "bob", sides[(bad, "bob")][0]))

    rows = finetune_rows(demo_store, "demo")
    assert [r["id"] for r in rows] == sorted([f"demo-{fixed}-alice", f"demo-{agreed}"])
    by_source = {r["source"]: r for r in rows}
    corr = by_source["correction"]
    assert corr["id"] == f"demo-{fixed}-alice" and corr["rater"] == "alice"
    assert corr["response"] == "Descale it monthly with citric acid."  # stored stripped
    assert (corr["prompt"], corr["category"]) == (items[fixed].prompt, items[fixed].category)
    pref = by_source["preferred"]
    assert pref["model"] == chosen and pref["response"] == items[agreed].outputs[chosen]
    assert (pref["prompt"], pref["category"], pref["raters"]) == (items[agreed].prompt, items[agreed].category,
                                                                  ["alice", "bob"])
    assert all({"id", "category", "prompt", "response", "source"} <= set(r) for r in rows)

    jsonl = export_text(demo_store, "demo", "jsonl")
    assert [json.loads(line) for line in jsonl.splitlines()] == rows and jsonl.endswith("\n")


def test_finetune_rows_of_an_imported_campaign_are_empty(store, tmp_path):
    import_judgments(store, "ext", _write(tmp_path, VALID))
    assert finetune_rows(store, "ext") == [] and export_text(store, "ext", "jsonl") == ""


# --- summary JSON ----------------------------------------------------------------------------------


def _strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"{token} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_summary_json_is_strict_json_of_the_ftlens_ratings_record(store, tmp_path):
    import_judgments(store, "ext", _write(tmp_path, VALID))
    judgments, likert = judgments_and_scores(store.ratings_of("ext"))
    record = _strict_json(summary_json(summarise(judgments, likert, campaign="ext", seed=3, n_resamples=50)))
    assert (record["schema"], record["version"], record["campaign"]) == ("ftlens.ratings", 1, "ext")
    assert (record["n_judgments"], record["models"], record["seed"], record["n_resamples"]) == (4, ["m1", "m2", "m3"],
                                                                                                3, 50)


def test_summary_json_without_defined_statistics_has_no_nan(store, tmp_path):
    # every rater gives the same verdict on every item: kappa is 0/0 (undefined), which must become
    # null rather than NaN; and an empty campaign gives a valid, mostly empty record
    text = HEADER + "".join(f"i{i},{r},m1,m2,model_a,\n" for i in range(4) for r in ("ann", "ben"))
    import_judgments(store, "same", _write(tmp_path, text))
    judgments, _ = judgments_and_scores(store.ratings_of("same"))
    records = []
    for s in (summarise(judgments, campaign="same", seed=1, n_resamples=50), summarise([], campaign="none")):
        text = summary_json(s)
        records.append(_strict_json(text))  # no NaN or Infinity token anywhere
        assert (records[-1]["schema"], records[-1]["version"]) == ("ftlens.ratings", 1) and text.endswith("\n")
    same, empty = records
    assert same["cohen_kappa"][0]["kappa"] is None and same["cohen_kappa"][0]["observed_agreement"] == 1.0
    assert same["position_bias"]["left_wins"] == 8
    assert (empty["n_judgments"], empty["models"], empty["bradley_terry"]["strengths"]) == (0, [], [])
