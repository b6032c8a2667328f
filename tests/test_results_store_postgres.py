"""The results store on a real PostgreSQL server (a throwaway cluster started by the test session),
and the store's own writes and reads on both backends.

Runs wherever PostgreSQL's server binaries are installed and we are root (CI). Elsewhere the
PostgreSQL cases are skipped with the reason, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import shutil

from eval_core.evaluation import evaluate_workspace
from eval_core.results_store import ResultsStore, checkpoints, datasets, nll_scores, protocols
from eval_core.results_summary import collect_results


def _nll(example_id: str, nll_sum: float) -> dict:
    return {"checkpoint_fp": "fp1", "dataset": "support_test", "example_id": example_id, "example_hash": f"h-{example_id}",
            "metric": "perplexity", "config_hash": "cfg1", "nll_sum": nll_sum, "token_count": 7, "byte_count": 30,
            "word_count": 6}


def test_writes_are_first_write_wins_and_read_back_exactly(store_url):
    with ResultsStore(store_url) as store:
        ckpt = {"fingerprint": "fp1", "run": "run-a", "name": "checkpoint-6", "step": 6, "path": "/ws/c6", "kind": "full"}
        store.upsert_reference(checkpoints, [ckpt])
        store.upsert_reference(checkpoints, [{**ckpt, "name": "renamed"}])  # content-keyed: the first stands
        store.upsert_reference(protocols, [{"config_hash": "cfg1", "metric": "perplexity", "protocol": '{"stride": 512}'}])
        store.set_dataset({"name": "support_test", "fingerprint": "d1", "path": "a.jsonl", "kind": "chat", "rows": 2,
                           "example_ids": '["e1"]'})
        store.set_dataset({"name": "support_test", "fingerprint": "d2", "path": "a.jsonl", "kind": "chat", "rows": 3,
                           "example_ids": '["e1", "e2"]'})  # replaces the previous description

        store.add_nll([_nll("e1", 0.1 + 0.2), _nll("e2", 1e-300)])
        store.add_nll([_nll("e1", 99.0)])  # the key exists: ignored, not overwritten
        store.add_generations([{"checkpoint_fp": "fp1", "dataset": "support_test", "example_id": "e1", "example_hash": "h-e1",
                                "config_hash": "gen1", "text": "Grüße — 👋\nbye", "new_tokens": 5, "finish_reason": "eos"}])
        store.add_analysis("forgetting", "k1", {"threshold": 0.5}, "digest", '{"v": 1}')
        store.add_analysis("forgetting", "k1", {"threshold": 0.5}, "digest", '{"v": 2}')

        assert [r["name"] for r in store.read(checkpoints)] == ["checkpoint-6"]
        assert [(r["fingerprint"], r["rows"]) for r in store.read(datasets)] == [("d2", 3)]
        assert store.protocols() == {"cfg1": {"metric": "perplexity", "stride": 512}}
        assert store.existing_keys("nll_scores", "fp1", "support_test", "perplexity", "cfg1") == {("e1", "h-e1"), ("e2", "h-e2")}
        assert store.existing_keys("nll_scores", "fp1", "support_test", "perplexity", "other") == set()
        # float64 round trip, bit for bit, on both backends
        assert {r["example_id"]: r["nll_sum"] for r in store.read(nll_scores)} == {"e1": 0.1 + 0.2, "e2": 1e-300}
        assert store.generations_of("fp1", "support_test", "gen1") == {("e1", "h-e1"): "Grüße — 👋\nbye"}
        assert store.analysis("forgetting", "k1") == '{"v": 1}' and store.analysis("forgetting", "k2") is None


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
