"""`python -m eval_core score`: inputs (.txt / .jsonl), the ftlens.score record, the table, and clean errors.

Expected figures come from sacrebleu and rouge-score called directly in the test; the paired
p-value from `sacrebleu.significance.PairedTest(test_type="bs")` with the same seed.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.significance import PairedTest

from eval_core.cli import main
from eval_core.text_metrics import ALL_METRICS

REPO = Path(__file__).resolve().parent.parent

PREDICTIONS = ["The cat sat on the mat.", "It ships in three days.", "", "Le café est fermé 😀", "Refund issued.\nThanks!"]
REFERENCES = ["The cat is on the mat.", "It ships in 3 days.", "nothing at all", "Le café est ouvert", "Refund was issued.\nThank you!"]
BASELINE = ["A cat on a mat.", "It ships in three days.", "nothing", "Le bar est fermé", "Refund.\nThanks!"]


def write_txt(path: Path, lines: list[str], end: str = "\n") -> Path:
    # multi-line texts cannot live in a .txt file: one line per text, so newlines become spaces there
    path.write_text(end.join(x.replace("\n", " ") for x in lines) + end, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {
        "pred": write_jsonl(tmp_path / "pred.jsonl", [{"id": f"q{i}", "output": p} for i, p in enumerate(PREDICTIONS)]),
        "ref": write_jsonl(tmp_path / "ref.jsonl", [{"answer": r, "topic": "x"} for r in REFERENCES]),
        "base": write_jsonl(tmp_path / "base.jsonl", [{"output": b} for b in BASELINE]),
    }


def test_module_entry_point_scores_many_lines_in_parallel_with_progress(tmp_path):
    # Run as `python -m eval_core`: enough pairs for worker processes and the progress bar.
    rng = random.Random(5)
    words = "order ships today refund card account reset password email agent".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(1200)]
    preds = [" ".join(w for w in r.split() if rng.random() < 0.8) for r in refs]
    out = subprocess.run(
        [sys.executable, "-m", "eval_core", "score", "--predictions", str(write_txt(tmp_path / "p.txt", preds)),
         "--references", str(write_txt(tmp_path / "r.txt", refs)), "--resamples", "100", "--metrics", "bleu,rougeL"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "pair" in out.stderr  # tqdm's bar: "1200/1200 [..., ...pair/s]"
    rec = json.loads(out.stdout)
    assert (rec["schema"], rec["schema_version"], rec["n"]) == ("ftlens.score", 1, 1200)
    assert rec["metrics"]["bleu"]["value"] == sacrebleu.corpus_bleu(preds, [refs]).score
    assert [e["id"] for e in rec["per_example"]] == list(range(1, 1201))
    assert rec["per_example"][7]["scores"]["bleu"] == sacrebleu.sentence_bleu(preds[7], [refs[7]]).score


def test_json_record_holds_values_intervals_signatures_and_examples(files, capsys):
    code, out, err = run(capsys, "--predictions", str(files["pred"]), "--references", str(files["ref"]),
                         "--seed", "7", "--resamples", "200")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["inputs"]["predictions"] == {"path": str(files["pred"]), "field": "output"}
    assert rec["inputs"]["references"]["field"] == "answer"
    assert (rec["seed"], rec["n_resamples"], rec["n"], rec["paired"]) == (7, 200, 5, None)
    assert list(rec["metrics"]) == list(ALL_METRICS) == rec["config"]["metrics"]
    bleu = rec["metrics"]["bleu"]
    assert bleu["value"] == sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    assert bleu["low"] <= bleu["high"] and bleu["scale"] == 100.0 and bleu["higher_is_better"] is True
    assert bleu["signature"].startswith("nrefs:1|case:mixed")
    assert rec["metrics"]["chrf"]["value"] == sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    lsum = [scorer.score(r, p)["rougeLsum"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    assert rec["metrics"]["rougeLsum"]["value"] == sum(lsum) / 5  # JSONL keeps the newlines: Lsum splits on them
    assert [e["scores"]["rougeLsum"] for e in rec["per_example"]] == lsum
    assert [e["id"] for e in rec["per_example"]] == [1, 2, 3, 4, 5]


def test_baseline_gives_sacrebleus_paired_test(files, capsys, monkeypatch):
    code, out, err = run(capsys, "--predictions", str(files["pred"]), "--references", str(files["ref"]),
                         "--baseline", str(files["base"]), "--seed", "99", "--metrics", "bleu,chrf,rouge1")
    assert code == 0, err
    rec = json.loads(out)
    monkeypatch.setenv("SACREBLEU_SEED", "99")
    _, table = PairedTest(
        [("base", BASELINE), ("pred", PREDICTIONS)], {"bleu": sacrebleu.BLEU()}, [REFERENCES], test_type="bs")()
    bleu = rec["paired"]["bleu"]
    assert bleu["p_value"] == table["BLEU"][1].p_value
    assert (bleu["baseline_value"], bleu["value"]) == (table["BLEU"][0].score, table["BLEU"][1].score)
    assert bleu["delta"] == bleu["value"] - bleu["baseline_value"] and bleu["sign_test_p"] is None
    rouge = rec["paired"]["rouge1"]
    assert rouge["wins"] + rouge["losses"] + rouge["ties"] == 5 and 0 < rouge["sign_test_p"] <= 1
    assert rec["metrics"]["bleu"]["baseline"]["value"] == sacrebleu.corpus_bleu(BASELINE, [REFERENCES]).score
    assert set(rec["per_example"][0]) == {"id", "scores", "baseline_scores"}
    assert rec["inputs"]["baseline"]["field"] == "output"


def test_table_format_for_people(files, capsys):
    code, out, _ = run(capsys, "--predictions", str(files["pred"]), "--references", str(files["ref"]),
                       "--baseline", str(files["base"]), "--format", "table", "--resamples", "100")
    assert code == 0
    assert "5 examples" in out and "95% interval" in out and "wins/losses/ties" in out and "sign test p" in out
    assert re.search(r"^bleu\s+\d+\.\d\d\s+\[", out, flags=re.M) and re.search(r"^rougeL\s+0\.\d{4}", out, flags=re.M)
    assert "Signatures:" in out and "tok:13a" in out


def test_txt_files_one_text_per_line(tmp_path, capsys):
    # No trailing newline, CRLF endings and a trailing newline all give the same five examples.
    refs = write_txt(tmp_path / "r.txt", REFERENCES)
    for name, end in (("lf.txt", "\n"), ("crlf.txt", "\r\n")):
        preds = write_txt(tmp_path / name, PREDICTIONS, end=end)
        code, out, err = run(capsys, "--predictions", str(preds), "--references", str(refs), "--resamples", "10")
        assert code == 0, err
        rec = json.loads(out)
        assert rec["n"] == 5 and rec["inputs"]["predictions"]["field"] is None
        assert rec["per_example"][2]["scores"]["bleu"] == 0.0  # the empty line is an empty prediction
    bare = tmp_path / "bare.txt"
    bare.write_text("\n".join(x.replace("\n", " ") for x in PREDICTIONS), encoding="utf-8")
    code, out, _ = run(capsys, "--predictions", str(bare), "--references", str(refs), "--resamples", "10")
    assert code == 0 and json.loads(out)["n"] == 5


def test_form_feed_and_unicode_line_separators_stay_inside_a_line(tmp_path, capsys):
    preds = tmp_path / "p.txt"
    preds.write_text("one\x0ctwo\u2028three\nfour\n", encoding="utf-8")
    refs = write_txt(tmp_path / "r.txt", ["one two three", "four"])
    code, out, err = run(capsys, "--predictions", str(preds), "--references", str(refs), "--metrics", "exact_match",
                         "--resamples", "10")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["n"] == 2 and rec["per_example"][0]["scores"]["exact_match"] == 1.0  # both are whitespace


def test_field_options_pick_the_jsonl_fields(tmp_path, capsys):
    both = write_jsonl(tmp_path / "both.jsonl", [{"gen": p, "gold": r} for p, r in zip(PREDICTIONS, REFERENCES, strict=True)])
    code, out, err = run(capsys, "--predictions", str(both), "--references", str(both), "--field", "gen",
                         "--reference-field", "gold", "--metrics", "chrf", "--resamples", "10")
    assert code == 0, err
    assert json.loads(out)["metrics"]["chrf"]["value"] == sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score


def test_lowercase_and_tokenize_reach_sacrebleu(files, capsys):
    code, out, _ = run(capsys, "--predictions", str(files["pred"]), "--references", str(files["ref"]),
                       "--lowercase", "--tokenize", "intl", "--metrics", "bleu", "--resamples", "10")
    assert code == 0
    rec = json.loads(out)
    expected = sacrebleu.BLEU(lowercase=True, tokenize="intl").corpus_score(PREDICTIONS, [REFERENCES]).score
    assert rec["metrics"]["bleu"]["value"] == expected and "tok:intl" in rec["metrics"]["bleu"]["signature"]


def _error(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"output": "a"}\n{"output": "b"\n', r"pred\.jsonl:2: invalid JSON"),
        ('{"output": "a"}\n{"text": "b"}\n', r"pred\.jsonl:2, field 'output': missing \(the object has: 'text'\)"),
        ('{"output": "a"}\n{"output": 3}\n', r"pred\.jsonl:2, field 'output': is a number, not a string"),
        ('{"output": "a"}\n{"output": null}\n', r"pred\.jsonl:2, field 'output': is null"),
        ('{"output": "a"}\n["b"]\n', r"pred\.jsonl:2: the line is a list, not a JSON object"),
        ('{"output": "a"}\n\n{"output": "b"}\n', r"pred\.jsonl:2: blank line inside a JSONL file"),
        ('{"prompt": "a"}\n', r"pred\.jsonl:1: none of the fields 'prediction', 'output', 'text'.*--field"),
        ("", r"pred\.jsonl: the predictions file has no JSON lines"),
    ],
    ids=["invalid-json", "missing-field", "number", "null", "not-an-object", "blank-line", "no-default-field", "empty"],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path, capsys, content, expected):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(content, encoding="utf-8")
    ref = write_txt(tmp_path / "ref.txt", ["a", "b"])
    assert re.search(expected, _error(capsys, "--predictions", str(pred), "--references", str(ref)))


def test_counts_must_match_and_the_error_names_both_files(tmp_path, capsys):
    pred = write_txt(tmp_path / "pred.txt", ["a", "b", "c"])
    ref = write_txt(tmp_path / "ref.txt", ["a", "b"])
    err = _error(capsys, "--predictions", str(pred), "--references", str(ref))
    assert f"{pred} has 3 examples but {ref} has 2" in err
    base = write_txt(tmp_path / "base.txt", ["a"])
    err = _error(capsys, "--predictions", str(ref), "--references", str(ref), "--baseline", str(base))
    assert f"{base} has 1 examples but {ref} has 2" in err


def test_other_input_errors(tmp_path, capsys):
    ref = write_txt(tmp_path / "ref.txt", ["a"])
    assert "does not exist" in _error(capsys, "--predictions", str(tmp_path / "nope.txt"), "--references", str(ref))
    csv = tmp_path / "pred.csv"
    csv.write_text("a\n")
    assert "must be .txt" in _error(capsys, "--predictions", str(csv), "--references", str(ref))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty.txt: the predictions file is empty" in _error(capsys, "--predictions", str(empty), "--references", str(ref))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    assert re.search(r"latin\.txt:2: not UTF-8", _error(capsys, "--predictions", str(latin), "--references", str(ref)))
    err = _error(capsys, "--predictions", str(ref), "--references", str(ref), "--metrics", "bleu,rouge_l")
    assert "field 'metrics'" in err and "Did you mean 'rougeL'" in err
    assert "at least 1" in _error(capsys, "--predictions", str(ref), "--references", str(ref), "--resamples", "0")


def test_the_schema_document_names_every_field(files, capsys):
    _, out, _ = run(capsys, "--predictions", str(files["pred"]), "--references", str(files["ref"]),
                    "--baseline", str(files["base"]), "--resamples", "10")
    rec = json.loads(out)
    doc = (REPO / "docs" / "score-schema.md").read_text(encoding="utf-8")
    keys = set(rec) | set(rec["metrics"]["bleu"]) | set(rec["metrics"]["bleu"]["baseline"]) | set(rec["paired"]["bleu"])
    keys |= set(rec["inputs"]["predictions"]) | set(rec["per_example"][0]) | set(rec["config"])
    missing = [k for k in sorted(keys) if f"`{k}`" not in doc]
    assert missing == []
    assert "python -m eval_core score" in (REPO / "README.md").read_text(encoding="utf-8")


def test_a_txt_file_over_the_size_cap_is_refused_unread(tmp_path):
    """`score` and `perplexity` read .txt inputs under the held-out sets' size cap (a sparse file)."""
    from eval_core.cli_scoring import _read_inputs
    from eval_core.cli_text import read_text_lines
    from eval_core.data_files import MAX_DATASET_BYTES
    from eval_core.errors import DatasetError

    big = tmp_path / "huge.txt"
    with big.open("wb") as f:
        f.truncate(MAX_DATASET_BYTES + 1)
    for read in (read_text_lines, lambda p: _read_inputs(p, "text")):
        with pytest.raises(DatasetError, match="268,435,457 bytes, over the 268,435,456-byte limit") as err:
            read(big)
        assert err.value.path == str(big)
    ok = tmp_path / "ok.txt"
    ok.write_text("one\u2028still one\r\ntwo\n", encoding="utf-8")
    assert _read_inputs(ok, "text") == (["line-1", "line-2"], ["one\u2028still one", "two"])


def test_rouge_tokenizer_option_is_applied_and_recorded(tmp_path, capsys):
    """`--rouge-tokenizer rouge-score` gives the library's own (0 for identical Cyrillic); the default scores it 1."""
    text = ["привет мир", "добрый день"]
    p, r = write_txt(tmp_path / "p.txt", text), write_txt(tmp_path / "r.txt", text)
    values = {}
    for tok in ("unicode", "rouge-score"):
        assert main(["score", "--predictions", str(p), "--references", str(r), "--metrics", "rougeL",
                     "--resamples", "10", "--rouge-tokenizer", tok]) == 0
        rec = json.loads(capsys.readouterr().out)
        values[tok] = rec["metrics"]["rougeL"]["value"]
        assert rec["config"]["rouge_tokenizer"] == tok
    assert values == {"unicode": 1.0, "rouge-score": 0.0}
