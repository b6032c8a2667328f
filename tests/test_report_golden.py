"""A golden Markdown report: a fixed small record renders to exactly tests/golden/report.md.

The record is hand-made (a two-checkpoint workspace with one metric, a forgetting analysis, one
rating campaign and one hostile example), so the file changes only when the rendering does.
Regenerate after an intended change with FTLENS_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

from eval_core.report_model import SECTIONS, Report
from eval_core.report_render import to_markdown

GOLDEN = Path(__file__).parent / "golden" / "report.md"


def fixed_report() -> Report:
    strengths = [{"model": "ckpt-20", "rank": 1, "strength": 0.4, "low": 0.1, "high": 0.7, "elo": 1069.5, "elo_low": 1017.4,
                  "elo_high": 1121.6, "n": 40},
                 {"model": "base", "rank": 2, "strength": -0.4, "low": -0.7, "high": -0.1, "elo": 930.5, "elo_low": 878.4,
                  "elo_high": 982.6, "n": 40}]
    forgetting = {"recommendation": {"checkpoint": "ckpt-10", "threshold": 0.95,
                                     "reason": "ckpt-10: highest domain gain (+20%) among checkpoints keeping >= 95% general retention"},
                  "checkpoints": [
                      {"label": "ckpt-10", "step": 10, "general_retention": 0.97, "forgetting_index": 0.03, "domain_gain": 0.2,
                       "on_frontier": True, "flips": [{"direction": "lost"}, {"direction": "gained"}]},
                      {"label": "ckpt-20", "step": 20, "general_retention": 0.9, "forgetting_index": 0.1, "domain_gain": 0.5,
                       "on_frontier": True, "flips": [{"direction": "lost"}] * 3}]}
    rating = {"campaign": "team", "n_judgments": 40, "bradley_terry": {"strengths": strengths},
              "cohen_kappa": [{"rater_1": "ann", "rater_2": "ben", "kappa": 0.5}], "fleiss_kappa": 0.48,
              "krippendorff_alpha": 0.49, "position_bias": {"share_left": 0.55, "low": 0.4, "high": 0.69, "flagged": False}}
    return Report(
        workspace={"name": "Golden | workspace", "root": "/ws",
                   "checkpoints": [{"run": None, "name": "base", "step": None, "fingerprint": "blake2b-128:00"},
                                   {"run": "ft", "name": "ckpt-10", "step": 10, "fingerprint": "blake2b-128:10"},
                                   {"run": "ft", "name": "ckpt-20", "step": 20, "fingerprint": "blake2b-128:20"}],
                   "datasets": [{"name": "support", "kind": "generation", "rows": 2, "fingerprint": "blake2b-128:aa"}]},
        sections=list(SECTIONS), created_at="2026-11-26T00:00:00+00:00", seed=12345, n_resamples=1000,
        summary={"recommended_checkpoint": "ckpt-10", "recommendation_reason": forgetting["recommendation"]["reason"],
                 "top_rated": [{"campaign": "team", "checkpoint": "ckpt-20", "elo": 1069.5, "judgments": 40}],
                 "best_by_metric": {"support · chrf": {"checkpoint": "ckpt-20", "value": 41.5, "low": 38.25, "high": 44.75}}},
        curves=[{"run": "ft", "metric": "eval_loss", "best_step": 10, "best_value": 1.25, "overfit_onset_step": 15,
                 "early_stop_step": 20}],
        metrics=[{"dataset": "support", "checkpoint": c, "metric": "chrf", "category": None, "value": v, "low": v - 3.25,
                  "high": v + 3.25, "n": 2, "signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"}
                 for c, v in (("base", 20.5), ("ckpt-20", 41.5))],
        forgetting=forgetting, ratings=[rating],
        examples=[{"dataset": "support", "checkpoint": "ckpt-20", "kind": "worst", "metric": "chrf", "value": 0.0, "id": "e1",
                   "prompt": "Where is my order?", "reference": "It ships today.",
                   "output": "<script>alert(1)</script> **not bold** [link](javascript:x)\nsecond line"}],
        notes=["a note with `code` and <b>tags</b>"], app_version="0.1.0")


def test_markdown_matches_the_golden_file():
    text = to_markdown(fixed_report())
    if os.environ.get("FTLENS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
