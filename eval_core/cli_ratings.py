"""The `ratings` command: blind pairwise rating campaigns from the command line.

    python -m eval_core ratings create  --workspace DIR --campaign NAME --checkpoint A --checkpoint B [...]
                                        --rater NAME [...] [--dataset NAME] [--overlap 2] [--rubric a,b,c]
                                        [--max-items N] [--seed N]
    python -m eval_core ratings summary --workspace DIR [--campaign NAME] [--seed N] [--resamples N] --format json|table
    python -m eval_core ratings export  --workspace DIR --campaign NAME --format csv|json|jsonl [--out FILE]
    python -m eval_core ratings import  --workspace DIR --campaign NAME FILE
    python -m eval_core ratings progress --workspace DIR --campaign NAME

`summary` prints the `ftlens.ratings` v1 record (docs/ratings-schema.md): the same numbers as the
Rating results page. Errors are `EvalCoreError`s printed as one line by `cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import DEFAULT_OVERLAP, DEFAULT_RUBRIC, DEFAULT_SEED


def _workspace(args: argparse.Namespace) -> Path:
    if not args.workspace.is_dir():
        raise EvalCoreError(f"{args.workspace}: not a folder; give the workspace folder with --workspace")
    return args.workspace


def _one_campaign(store, name: str | None) -> str:  # noqa: ANN001
    if name is not None:
        return store.campaign(name).name
    names = [c.name for c in store.campaigns()]
    if len(names) != 1:
        raise EvalCoreError("name the campaign with --campaign; campaigns: " + (", ".join(names) or "(none yet)"),
                            field="campaign")
    return names[0]


def _cmd_create(args: argparse.Namespace) -> int:
    from eval_core.rating_setup import create_campaign

    rubric = tuple(c.strip() for c in args.rubric.split(",") if c.strip())
    spec, n = create_campaign(_workspace(args), args.campaign, args.checkpoint, args.rater, dataset=args.dataset,
                              overlap=args.overlap, rubric=rubric, seed=args.seed, max_items=args.max_items)
    print(f"campaign '{spec.name}': {n} items of {spec.dataset} comparing {', '.join(spec.models)}; "
          f"{len(spec.raters)} raters, each item seen by {spec.overlap}; seed {spec.seed}")
    return 0


def format_summary_table(summary) -> str:  # noqa: ANN001 - a rating_analysis.RatingSummary
    from eval_core.cli import _table

    bt = summary.bradley_terry
    rows = [[s.rank, s.model, f"{s.elo:.0f} [{s.elo_low:.0f}, {s.elo_high:.0f}]",
             f"{s.strength:+.3f} [{s.low:+.3f}, {s.high:+.3f}]", s.n] for s in bt.strengths]
    wins = {w.model: w for w in summary.win_rates}
    for r in rows:
        w = wins.get(r[1])
        r.append("-" if w is None or w.rate is None else f"{w.rate:.1%} [{w.low:.1%}, {w.high:.1%}]")
    pb = summary.position_bias
    kappas = ", ".join(f"{p.rater_1}/{p.rater_2} {p.kappa:.3f}" for p in summary.cohen_kappa if p.kappa is not None) or "-"
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return "\n".join([
        f"Campaign {summary.campaign}: {summary.n_judgments} judgments; Bradley-Terry (ties {bt.ties}), "
        f"bootstrap 95% intervals, {summary.n_resamples} resamples, seed {summary.seed}",
        "",
        _table(["rank", "checkpoint", "Elo [95% CI]", "strength [95% CI]", "judgments", "win rate [95% CI]"], rows),
        "",
        f"Agreement: Cohen's kappa {kappas}; Fleiss' kappa {fmt(summary.fleiss_kappa)} ({summary.fleiss_items} items); "
        f"Krippendorff's alpha {fmt(summary.krippendorff_alpha)} ({summary.krippendorff_items} items)",
        "Position bias: " + ("-" if pb.share_left is None else
                             f"left wins {pb.share_left:.1%} [{pb.low:.1%}, {pb.high:.1%}] of {pb.left_wins + pb.right_wins} "
                             f"decisive judgments" + (" — FLAGGED: differs from 50%" if pb.flagged else "")),
    ])


def _cmd_summary(args: argparse.Namespace) -> int:
    from eval_core.rating_setup import campaign_summary, open_rating_store

    if args.resamples < 1:
        raise EvalCoreError(f"--resamples {args.resamples}: give at least 1", field="resamples")
    root = _workspace(args)
    with open_rating_store(root) as store:
        name = _one_campaign(store, args.campaign)
        changed = store.text_changes(name)
    if changed:  # stderr: a --format json reader still sees it
        print(f"warning: {len(changed)} items of '{name}' have other text under the same id in another campaign "
              f"on the same set (it was edited): {', '.join(changed[:10])}{' ...' if len(changed) > 10 else ''}",
              file=sys.stderr)
    summary = campaign_summary(root, name, seed=args.seed, n_resamples=args.resamples)
    if args.format == "json":
        print(json.dumps(summary.to_dict(), indent=1, ensure_ascii=False, allow_nan=False))
    else:
        print(format_summary_table(summary))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from eval_core.rating_exchange import export_text
    from eval_core.rating_setup import open_rating_store

    with open_rating_store(_workspace(args)) as store:
        text = export_text(store, _one_campaign(store, args.campaign), args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise EvalCoreError(f"cannot write {args.out}: {exc.strerror}; give a file in an existing folder",
                                field="out") from exc
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from eval_core.rating_exchange import import_judgments
    from eval_core.rating_setup import open_rating_store

    with open_rating_store(_workspace(args)) as store:
        stored, existing = import_judgments(store, args.campaign, args.file)
    print(f"imported {stored} judgments into '{args.campaign}'" + (f" ({existing} were already stored)" if existing else ""))
    return 0


def _cmd_progress(args: argparse.Namespace) -> int:
    from eval_core.cli import _table
    from eval_core.rating_setup import open_rating_store

    with open_rating_store(_workspace(args)) as store:
        name = _one_campaign(store, args.campaign)
        rows = [[p.rater, p.done, p.total, p.skipped] for p in store.progress(name)]
    print(_table(["rater", "rated", "assigned", "skipped"], rows))
    return 0


def add_ratings_commands(sub: argparse._SubParsersAction) -> None:
    """Register `ratings` and its subcommands on the main parser."""
    p = sub.add_parser("ratings", help="blind pairwise rating campaigns: create, summary, export, import, progress",
                       description="Blind side-by-side human ratings of stored outputs. Schema: docs/ratings-schema.md.")
    rsub = p.add_subparsers(dest="ratings_command", required=True)

    def common(q: argparse.ArgumentParser, campaign_required: bool = False) -> None:
        q.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
        q.add_argument("--campaign", required=campaign_required, default=None,
                       help="the campaign" + ("" if campaign_required else " (default: the only one)"))

    c = rsub.add_parser("create", help="a campaign over stored outputs of two or more checkpoints")
    common(c, campaign_required=True)
    c.add_argument("--checkpoint", action="append", required=True, help="a checkpoint to compare (twice or more)")
    c.add_argument("--rater", action="append", required=True, help="a rater's name (once per rater)")
    c.add_argument("--dataset", default=None, help="the generation set (default: the newest with outputs)")
    c.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="raters per item (default 2)")
    c.add_argument("--rubric", default=",".join(DEFAULT_RUBRIC), help="Likert criteria, comma separated (1-5 each)")
    c.add_argument("--max-items", type=int, default=None, help="rate at most this many items (a seeded sample)")
    c.add_argument("--seed", type=int, default=DEFAULT_SEED, help="assignment and left/right seed")
    c.set_defaults(func=_cmd_create)

    s = rsub.add_parser("summary", help="ranking with intervals, win rates, agreement, position bias")
    common(s)
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default 12345)")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    s.add_argument("--format", choices=("json", "table"), default="table")
    s.set_defaults(func=_cmd_summary)

    e = rsub.add_parser("export", help="ratings as csv/json, or rater corrections and preferred outputs as jsonl")
    common(e)
    e.add_argument("--format", choices=("csv", "json", "jsonl"), default="csv")
    e.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    e.set_defaults(func=_cmd_export)

    i = rsub.add_parser("import", help="pairwise judgments from another tool (CSV)")
    common(i, campaign_required=True)
    i.add_argument("file", type=Path, help="CSV with item_id, rater, model_a (shown left), model_b, winner[, category]")
    i.set_defaults(func=_cmd_import)

    g = rsub.add_parser("progress", help="per rater: rated, assigned, skipped")
    common(g)
    g.set_defaults(func=_cmd_progress)
