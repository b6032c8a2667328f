"""The results store on a real PostgreSQL server (a throwaway cluster started by this test).

Runs wherever PostgreSQL's server binaries are installed and we are root (CI). Elsewhere it is
skipped with the reason, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from eval_core.evaluation import evaluate_workspace
from eval_core.results_store import ResultsStore
from eval_core.results_summary import collect_results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or os.geteuid() != 0 or not shutil.which("runuser"):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (and root) are needed for this test in CI")
        pytest.skip("no PostgreSQL server binaries here (or not root to run them as 'postgres')")
    pg = bins[-1]
    data = tempfile.mkdtemp(prefix="ftlens-pg-")
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{pg}/initdb", "-D", f"{data}/db", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", f"{data}/db", "-l", f"{data}/log", "-w", "-t", "30", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", f"{data}/db", "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


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
