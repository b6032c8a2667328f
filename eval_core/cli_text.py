"""The `score` command: text metrics of predictions against references, with intervals and a paired test.

    python -m eval_core score --predictions FILE --references FILE [--baseline FILE] [--format json|table]

Inputs are `.txt` files (one text per line; one trailing newline ends the file, it does not add an
empty example) or `.jsonl` files (one JSON object per line; the text is in `--field`, or in the
first of the usual field names that the first object has). Example ids are line numbers. The JSON
output follows schema `ftlens.score` (docs/score-schema.md). Registered on the main parser by
`cli.build_parser`; errors are `EvalCoreError`s naming file, line and field, printed by `cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from eval_core.data_files import MAX_DATASET_BYTES, check_file_size
from eval_core.errors import DatasetError, EvalCoreError

SCORE_SCHEMA = "ftlens.score"
SCORE_SCHEMA_VERSION = 1
PREDICTION_FIELDS = ("prediction", "output", "text")
REFERENCE_FIELDS = ("reference", "answer", "target")
PROGRESS_MIN_PAIRS = 1000
"""Below this many pairs scoring takes a few seconds at most and a progress bar is noise."""


@dataclass(frozen=True)
class TextColumn:
    """The texts of one input file, in file order, and where they came from."""

    path: Path
    texts: list[str]
    field: str | None  # None for .txt files


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_text_lines(path: Path) -> list[str]:
    """Lines split on "\\n" only (a trailing "\\r" dropped), without the empty piece after a final newline.

    `str.splitlines` is not used on purpose: it also splits on form feeds, U+2028 and other
    separators that may occur inside one model output, which would shift every later example.
    """
    if not path.is_file():
        raise DatasetError("file does not exist (or is not a file)", path=path)
    # The held-out sets' size cap, checked before the file is read.
    check_file_size(path, MAX_DATASET_BYTES, "text files", "split the file or score a sample of its lines")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8",
                           path=path, line=line) from None
    if text == "":
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [x[:-1] if x.endswith("\r") else x for x in lines]


def read_texts(path: Path, role: str, field: str | None = None) -> TextColumn:
    """The texts of a `.txt` or `.jsonl` file; `role` ("predictions", "references", "baseline") picks
    the default field names and appears in error messages.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "preds.jsonl"
        >>> _ = p.write_text('{"output": "Paris"}\\n{"output": "Rome"}\\n')
        >>> read_texts(p, "predictions").texts
        ['Paris', 'Rome']
    """
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".ndjson"):
        raise DatasetError(f"the {role} file must be .txt (one text per line) or .jsonl (one JSON object per "
                           "line); rename it or convert it", path=path)
    lines = read_text_lines(path)
    if suffix == ".txt":
        if not lines:
            raise DatasetError(f"the {role} file is empty: it needs one text per line", path=path)
        return TextColumn(path, lines, None)

    while lines and not lines[-1].strip():
        lines.pop()  # blank lines at the end of a JSONL file are harmless
    if not lines:
        raise DatasetError(f"the {role} file has no JSON lines", path=path)
    rows: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetError("blank line inside a JSONL file: every line must hold one JSON object (example "
                               "ids are line numbers, so it cannot be skipped); delete it", path=path, line=number)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line",
                               path=path, line=number) from None
        if not isinstance(row, dict):
            raise DatasetError(f"the line is {_json_type(row)}, not a JSON object with a text field",
                               path=path, line=number)
        rows.append(row)

    if field is None:
        defaults = REFERENCE_FIELDS if role == "references" else PREDICTION_FIELDS
        field = next((f for f in defaults if f in rows[0]), None)
        if field is None:
            raise DatasetError(f"none of the fields {', '.join(map(repr, defaults))} is in the first object "
                               f"(it has: {', '.join(map(repr, rows[0])) or 'no fields'}); name the field with "
                               f"{'--reference-field' if role == 'references' else '--field'}", path=path, line=1)
    texts = []
    for number, row in enumerate(rows, start=1):
        if field not in row:
            raise DatasetError(f"missing (the object has: {', '.join(map(repr, row)) or 'no fields'})",
                               path=path, line=number, field=field)
        value = row[field]
        if not isinstance(value, str):
            raise DatasetError(f"is {_json_type(value)}, not a string: the metrics compare texts",
                               path=path, line=number, field=field)
        texts.append(value)
    return TextColumn(path, texts, field)


def _check_counts(references: TextColumn, *others: TextColumn) -> None:
    for other in others:
        if len(other.texts) != len(references.texts):
            raise EvalCoreError(
                f"{other.path} has {len(other.texts)} examples but {references.path} has {len(references.texts)}: "
                "every line must pair with the line of the same number; check for missing or extra lines"
            )


def _parse_metrics(spec: str) -> tuple[str, ...]:
    names = [m.strip() for m in spec.split(",") if m.strip()]
    return tuple(dict.fromkeys(names))  # duplicates dropped, order kept


def _score(column: TextColumn, references: TextColumn, config, description: str):  # noqa: ANN001, ANN202
    from tqdm.auto import tqdm

    from eval_core.text_metrics import score_pairs

    n = len(column.texts)
    with tqdm(total=n, desc=description, unit="pair", file=sys.stderr, disable=n < PROGRESS_MIN_PAIRS) as bar:
        return score_pairs(column.texts, references.texts, config, progress=bar.update)


def build_score_record(
    predictions: TextColumn,
    references: TextColumn,
    baseline: TextColumn | None,
    metrics: tuple[str, ...],
    *,
    seed: int,
    n_resamples: int,
    bleu_tokenize: str = "13a",
    lowercase: bool = False,
    rouge_tokenizer: str = "unicode",
) -> dict:
    """The `ftlens.score` record (docs/score-schema.md) of predictions (and a baseline) against references."""
    from eval_core.significance import bootstrap_interval, paired_test
    from eval_core.text_metrics import HIGHER_IS_BETTER, SCALE, TextMetricConfig, signature

    if n_resamples < 1:
        raise EvalCoreError("--resamples must be at least 1 (1000 is the usual choice)", field="resamples")
    config = TextMetricConfig(metrics=metrics, bleu_tokenize=bleu_tokenize, lowercase=lowercase,
                              rouge_tokenizer=rouge_tokenizer)
    _check_counts(references, predictions, *([baseline] if baseline else []))
    scores = _score(predictions, references, config, "predictions")
    base_scores = _score(baseline, references, config, "baseline") if baseline else None

    corpus: dict[str, dict] = {}
    paired: dict[str, dict] = {}
    for m in config.metrics:
        stats = [s.stats[m] for s in scores]
        iv = bootstrap_interval(m, stats, n_resamples=n_resamples, seed=seed, config=config)
        corpus[m] = {"value": iv.value, "low": iv.low, "high": iv.high, "scale": SCALE[m],
                     "higher_is_better": HIGHER_IS_BETTER[m], "signature": signature(m, config)}
        if base_scores is not None:
            base_stats = [s.stats[m] for s in base_scores]
            biv = bootstrap_interval(m, base_stats, n_resamples=n_resamples, seed=seed, config=config)
            corpus[m]["baseline"] = {"value": biv.value, "low": biv.low, "high": biv.high}
            test = paired_test(m, base_stats, stats, [s.values[m] for s in base_scores],
                               [s.values[m] for s in scores], n_resamples=n_resamples, seed=seed, config=config)
            paired[m] = {"baseline_value": test.value_a, "value": test.value_b, "delta": test.delta,
                         "p_value": test.p_value, "wins": test.b_better, "losses": test.a_better, "ties": test.ties,
                         "sign_test_p": test.sign_test_p, "method": test.method}
    per_example = []
    for i, s in enumerate(scores):
        row = {"id": i + 1, "scores": dict(s.values)}
        if base_scores is not None:
            row["baseline_scores"] = dict(base_scores[i].values)
        per_example.append(row)
    files = {"predictions": predictions, "references": references, **({"baseline": baseline} if baseline else {})}
    return {
        "schema": SCORE_SCHEMA,
        "schema_version": SCORE_SCHEMA_VERSION,
        "inputs": {role: {"path": str(c.path), "field": c.field} for role, c in files.items()},
        "n": len(scores),
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "seed": seed,
        "n_resamples": n_resamples,
        "interval": "bootstrap percentile 95% (sacrebleu's procedure)",
        "metrics": corpus,
        "paired": paired if baseline else None,
        "per_example": per_example,
    }


def format_score_table(record: dict) -> str:
    """The `score --format table` text: one row per metric; with a baseline, the paired test beside it."""
    from eval_core.cli import _table  # the CLI's one table renderer (imported late: cli imports this module)

    def num(metric: str, value: float) -> str:
        return f"{value:.2f}" if record["metrics"][metric]["scale"] == 100.0 else f"{value:.4f}"

    inputs = record["inputs"]
    head = [f"{record['n']} examples: {inputs['predictions']['path']} against {inputs['references']['path']}"
            + (f", baseline {inputs['baseline']['path']}" if "baseline" in inputs else ""),
            f"95% bootstrap intervals, {record['n_resamples']} resamples, seed {record['seed']}", ""]
    headers = ["metric", "value", "95% interval"]
    if record["paired"] is not None:
        headers += ["baseline", "delta", "p", "wins/losses/ties", "sign test p"]
    rows = []
    for m, c in record["metrics"].items():
        row = [m, num(m, c["value"]), f"[{num(m, c['low'])}, {num(m, c['high'])}]"]
        if record["paired"] is not None:
            t = record["paired"][m]
            row += [num(m, t["baseline_value"]), ("+" if t["delta"] >= 0 else "") + num(m, t["delta"]),
                    f"{t['p_value']:.4f}", f"{t['wins']}/{t['losses']}/{t['ties']}",
                    "-" if t["sign_test_p"] is None else f"{t['sign_test_p']:.4f}"]
        rows.append(row)
    notes = ["", "Signatures:", *(f"  {m}: {c['signature']}" for m, c in record["metrics"].items())]
    return "\n".join([*head, _table(headers, rows), *notes])


def _cmd_score(args: argparse.Namespace) -> int:
    from eval_core.text_metrics import ALL_METRICS

    metrics = _parse_metrics(args.metrics) if args.metrics else ALL_METRICS
    predictions = read_texts(args.predictions, "predictions", args.field)
    references = read_texts(args.references, "references", args.reference_field)
    baseline = read_texts(args.baseline, "baseline", args.field) if args.baseline else None
    record = build_score_record(predictions, references, baseline, metrics, seed=args.seed,
                                n_resamples=args.resamples, bleu_tokenize=args.tokenize, lowercase=args.lowercase,
                                rouge_tokenizer=args.rouge_tokenizer)
    if args.format == "table":
        print(format_score_table(record))
    else:
        print(json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False))
    return 0


def add_text_commands(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    """Register `score` on the main parser's subparsers."""
    from eval_core.significance import DEFAULT_RESAMPLES, DEFAULT_SEED
    from eval_core.text_metrics import BLEU_TOKENIZERS, ROUGE_TOKENIZERS

    score = sub.add_parser(
        "score", help="BLEU, chrF, ROUGE and exact match of predictions against references, with 95%% intervals",
        description="Score predictions against references line by line with sacrebleu (BLEU, chrF) and "
        "rouge-score (ROUGE-1/2/L/Lsum, Porter stemmer), and exact match after normalisation; each corpus "
        "value comes with a seeded bootstrap 95% interval (sacrebleu's procedure). With --baseline, a paired "
        "bootstrap test (and a sign test for per-example metrics) of predictions against the baseline. "
        "Files: .txt (one text per line) or .jsonl. JSON output: schema 'ftlens.score' (docs/score-schema.md).",
    )
    score.add_argument("--predictions", required=True, type=Path, help=".txt or .jsonl file of model outputs")
    score.add_argument("--references", required=True, type=Path, help=".txt or .jsonl file, one reference per prediction")
    score.add_argument("--baseline", type=Path, default=None, help="outputs of another model on the same lines")
    score.add_argument("--field", default=None,
                       help="JSONL field of predictions and baseline (default: first of " + ", ".join(PREDICTION_FIELDS) + ")")
    score.add_argument("--reference-field", default=None,
                       help="JSONL field of references (default: first of " + ", ".join(REFERENCE_FIELDS) + ")")
    score.add_argument("--metrics", default=None, help="comma-separated subset of bleu,chrf,rouge1,rouge2,rougeL,"
                       "rougeLsum,exact_match (default: all)")
    score.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED}, "
                       "sacrebleu's)")
    score.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                       help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    score.add_argument("--tokenize", default="13a", choices=BLEU_TOKENIZERS, help="sacrebleu's BLEU tokenizer (default 13a)")
    score.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU and chrF")
    score.add_argument("--rouge-tokenizer", default="unicode", choices=ROUGE_TOKENIZERS,
                       help="unicode (default: rouge-score's tokenizer keeping every script; the same tokens on "
                       "ASCII) or rouge-score (the library's own, which drops non-[a-z0-9] text)")
    score.add_argument("--format", choices=("json", "table"), default="json")
    score.set_defaults(func=_cmd_score)
