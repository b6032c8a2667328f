"""The `report` command: the evaluation report from stored results.

    python -m eval_core report --workspace DIR --format html|md|json|csv|pdf --out FILE [--sections a,b,...] [--charts]
                               [--seed N] [--resamples N]

Builds the `ftlens.report` record (eval_core.report_model; it runs no model) and writes it as
self-contained HTML, Markdown, JSON, a zip of CSV tables (`csv`) or PDF (eval_core.report_html). Errors are `EvalCoreError`s printed as one line by `cli.main`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.report_model import DEFAULT_RESAMPLES, DEFAULT_SEED, SECTIONS


def _cmd_report(args: argparse.Namespace) -> int:
    from eval_core.report_html import to_html, to_pdf
    from eval_core.report_model import build_report
    from eval_core.report_render import to_csv_zip, to_json, to_markdown

    if not args.workspace.is_dir():
        raise EvalCoreError(f"{args.workspace}: not a folder; give the workspace folder with --workspace")
    if args.resamples < 1:
        raise EvalCoreError(f"--resamples {args.resamples}: give at least 1", field="resamples")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    report = build_report(args.workspace, sections, seed=args.seed, n_resamples=args.resamples)
    if args.charts and args.format != "md":
        raise EvalCoreError("--charts writes PNG charts beside a Markdown report; use it with --format md "
                            "(html and pdf always hold the charts)", field="charts")
    if args.format == "md" and args.charts:
        from eval_core.report_html import write_markdown

        try:
            files = write_markdown(report, args.out, charts=True)
        except OSError as exc:
            raise EvalCoreError(f"cannot write {args.out}: {exc.strerror}; give a file in an existing folder", field="out") from exc
        print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
        return 0
    render = {"csv": to_csv_zip, "pdf": to_pdf, "json": lambda r: to_json(r).encode("utf-8"),
              "md": lambda r: to_markdown(r).encode("utf-8"), "html": lambda r: to_html(r).encode("utf-8")}
    data = render[args.format](report)
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        raise EvalCoreError(f"cannot write {args.out}: {exc.strerror}; give a file in an existing folder", field="out") from exc
    print(f"wrote {args.out} ({len(data):,} bytes; sections: {', '.join(report.sections)})", file=sys.stderr)
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    """Register `report` on the main parser's subcommands."""
    p = sub.add_parser("report", help="the evaluation report (html, md, json, csv zip, pdf) from stored results",
                       description="Summary and recommendation, training curves, metrics with intervals, forgetting, "
                       "human ratings and representative examples, with every number's protocol and the workspace's "
                       "fingerprints; built from stored results only.")
    p.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
    p.add_argument("--format", choices=("html", "md", "json", "csv", "pdf"), required=True,
                   help="html: one self-contained file (charts inlined, no network); csv: a zip of one CSV per table; "
                   "pdf: the HTML printed by headless Chromium")
    p.add_argument("--out", required=True, type=Path, help="the file to write")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma separated (default all: {','.join(SECTIONS)})")
    p.add_argument("--charts", action="store_true", help="md only: also write the charts as PNG files "
                   "(<out stem>_charts/, drawn with the system Chromium) and link them")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default 12345)")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default 1000)")
    p.set_defaults(func=_cmd_report)
