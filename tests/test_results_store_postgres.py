"""The results store on a real PostgreSQL server (a throwaway cluster started by this test).

Runs wherever PostgreSQL's server binaries are installed and we are root (CI). Elsewhere it is
skipped with the reason, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import shutil

from eval_core.evaluation import evaluate_workspace
from eval_core.results_store import ResultsStore
from eval_core.results_summary import collect_results


def test_evaluate_into_postgres_then_cached(quick_demo, tmp_path, monkeypatch, postgres_url):
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "results.sqlite*"))
    monkeypatch.setenv("FTLENS_DATABASE_URL", postgres_url)
    first = evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_text"])
    assert first.computed == 56 and first.database == postgres_url
    assert evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_text"]).computed == 0
    store = ResultsStore(postgres_url)
    (cell,) = collect_results(store)["results"]
    store.close()
    assert cell["examples"] == 56 and cell["perplexity"] > 1
    assert "postgres@127.0.0.1" in collect_results(ResultsStore(postgres_url))["database"]
    assert not (ws / ".ftlens" / "results.sqlite").exists()
