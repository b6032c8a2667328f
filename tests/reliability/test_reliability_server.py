"""Catalogue section 2, "Dashboard server": cases 12, 15, 16, 18 and 19 (docs: reliability-cases.md).

Each case is one test named `test_case_NN_<slug>`, its variants parametrized inside it. Nothing here
reaches the network: the live-server tests talk to a Streamlit started on 127.0.0.1, and the path
tests fail on any socket connection at all.
"""

from __future__ import annotations

import ast
import base64
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import time
import tomllib
import traceback
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from eval_core.cli import main
from eval_core.errors import DatasetError, EvalCoreError, WorkspaceError
from eval_core.rating_campaigns import CampaignSpec
from eval_core.rating_setup import open_rating_store
from eval_core.rating_store import RatingItem
from eval_core.results_store import ENV_DATABASE_URL, ResultsStore, redact
from eval_core.training_logs import read_run_logs
from eval_core.workspace import discover_workspace
from eval_core.workspace_config import parse_workspace_config

REPO = Path(__file__).resolve().parents[2]
SECRET_TEXT = "TOPSECRET-8d1f"  # the content of every file outside the workspace
PASSWORD = "s3cretPW"


@pytest.fixture
def no_network(monkeypatch):
    """Any outbound connection attempt fails the test (a URL path must never be fetched)."""

    def refuse(self, address, *args):  # noqa: ANN001, ANN202
        raise AssertionError(f"network connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _outside(tmp_path: Path) -> Path:
    """A folder beside the workspace holding a secret file (and a dataset-looking one)."""
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    (out / "secret.jsonl").write_text(json.dumps({"text": SECRET_TEXT}) + "\n")
    (out / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "loss": SECRET_TEXT}]}))
    return out


def _workspace(tmp_path: Path, config: str = 'name = "ws"\n') -> Path:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "ftlens.toml").write_text(config)
    return ws


# --- case 12: path inputs ---------------------------------------------------------------------------

PATH_VARIANTS = [
    "../../etc/passwd", "/etc/shadow", "~/.ssh/id_rsa", "//proc/self/root/etc/passwd", "file:///etc/",
    "http://169.254.169.254/", "\\\\attacker\\share\\x", "\\\\?\\C:\\x", "\\\\.\\pipe\\x", "C:x",
    "%2e%2e%2fsecret.jsonl", "heldout/a.jsonl#/../../../outside/secret.jsonl", "runs/x?/../../outside",
    "heldout/a\0.jsonl", "heldout/../../outside/secret.jsonl",
]
CONFIG_FIELDS = {
    "base_model": ("base_model = {v}\n", "base_model"),
    "run": ("[[runs]]\nname = \"r\"\npath = {v}\n", "runs[0].path"),
    "dataset": ("[[datasets]]\nname = \"d\"\npath = {v}\n", "datasets[0].path"),
}
SYMLINKS = ["dataset", "run_folder", "base_model", "trainer_state", "checkpoint_weights", "log_path"]


def _escape_by_symlink(kind: str, ws: Path, target: Path, tiny_gpt2) -> str:  # noqa: ANN001
    """Plant a link of `kind` in `ws` pointing at `target`; return the error text the product gives."""
    if kind == "dataset":
        (ws / "heldout").mkdir()
        (ws / "heldout" / "leak.jsonl").symlink_to(target / "secret.jsonl")
        problems = discover_workspace(ws).problems
        (msg,) = [p.message for p in problems if "leak" in (p.field or "") or "leak" in p.message]
        return msg
    if kind == "run_folder":
        (ws / "ftlens.toml").write_text('[[runs]]\nname = "r"\npath = "runs/r"\n')
        (ws / "runs").mkdir()
        (ws / "runs" / "r").symlink_to(target, target_is_directory=True)
    elif kind == "base_model":
        (ws / "ftlens.toml").write_text('base_model = "base_model"\n')
        (ws / "base_model").symlink_to(target, target_is_directory=True)
    elif kind == "trainer_state":
        (ws / "run").mkdir()
        (ws / "run" / "trainer_state.json").symlink_to(target / "trainer_state.json")
        assert not discover_workspace(ws).log_files, "discovery must not list a linked log"
        with pytest.raises(DatasetError) as err:
            read_run_logs(ws / "run", root=ws)
        return str(err.value)
    elif kind == "log_path":
        with pytest.raises(DatasetError) as err:
            read_run_logs(target / "trainer_state.json", root=ws)
        return str(err.value)
    elif kind == "checkpoint_weights":
        ckpt = ws / "run" / "checkpoint-1"
        ckpt.mkdir(parents=True)
        for f in tiny_gpt2[0].iterdir():
            (ckpt / f.name).write_bytes(f.read_bytes())
        (ckpt / "model.safetensors").unlink()
        (ckpt / "model.safetensors").symlink_to(target / "model.safetensors")
        (msg,) = [p.message for p in discover_workspace(ws).problems if p.severity == "error"]
        return msg
    with pytest.raises(WorkspaceError) as err:
        discover_workspace(ws)
    return str(err.value)


@pytest.mark.parametrize("scenario", [
    *[pytest.param(("config", f, v), id=f"config-{f}-{v!r}") for f in CONFIG_FIELDS for v in PATH_VARIANTS],
    *[pytest.param(("symlink", k, None), id=f"symlink-{k}") for k in SYMLINKS],
    *[pytest.param(("root", None, v), id=f"workspace-root-{v!r}") for v in
      ("file:///etc/", "http://169.254.169.254/", "\\\\attacker\\share\\x", "ws\0/x")],
    pytest.param(("store", "cli", None), id="store-not-made-in-a-non-workspace-cli"),
    pytest.param(("store", "discovery", None), id="store-not-made-in-a-non-workspace-discovery"),
])
def test_case_12_path_escapes_are_refused(scenario, tmp_path, no_network, capsys, request):
    """Every user-named path that could leave the workspace (traversal, absolute, home, proc, URL, UNC,
    device, encoded, #/?, NUL, symlink) is refused with an error naming file and field; nothing
    outside is read, fetched or echoed, the answer is the same whether the target exists, and no
    database or cache is written into a folder that is not a workspace."""
    kind, which, value = scenario
    outside = _outside(tmp_path)
    tiny_gpt2 = request.getfixturevalue("tiny_gpt2") if kind in ("symlink", "store") else None
    if kind == "config":
        template, field = CONFIG_FIELDS[which]
        ws = _workspace(tmp_path, template.format(v=json.dumps(value)))
        with pytest.raises(WorkspaceError) as err:
            parse_workspace_config(ws / "ftlens.toml")
        assert err.value.path == str(ws / "ftlens.toml") and err.value.field == field and err.value.line
        assert SECRET_TEXT not in str(err.value) and "exist" not in err.value.message
        # The same through the CLI: one line on stderr, exit 2, no traceback.
        assert main(["workspace", "--workspace", str(ws)]) == 2
        stderr = capsys.readouterr().err
        assert stderr.count("\n") == 1 and "ftlens.toml" in stderr and "Traceback" not in stderr
    elif kind == "symlink":
        texts = []
        for name, target in (("exists", outside), ("missing", tmp_path / "no-such-folder")):
            ws = tmp_path / f"ws-{name}"
            ws.mkdir()
            (ws / "ftlens.toml").write_text("")
            if name == "exists" and which == "checkpoint_weights":
                (outside / "model.safetensors").write_bytes((tiny_gpt2[0] / "model.safetensors").read_bytes())
            if name == "exists" and which in ("run_folder", "base_model"):
                (outside / "checkpoint-1").mkdir(exist_ok=True)
            texts.append(_escape_by_symlink(which, ws, target, tiny_gpt2).replace(str(ws), "WS"))
        exists, missing = texts
        assert "outside the workspace" in exists or "leaves the workspace" in exists or "out of" in exists
        assert SECRET_TEXT not in exists
        # Whether anything exists out there must not show: both answers are the same text.
        assert exists == missing.replace("no-such-folder", "outside")
    elif kind == "root":
        assert main(["workspace", "--workspace", value]) == 2
        stderr = capsys.readouterr().err
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr
    elif which == "cli":
        plain = tmp_path / "plain"
        (plain / "notes").mkdir(parents=True)
        for argv in (["ratings", "progress", "--campaign", "c"], ["results"], ["ratings", "summary"]):
            assert main([*argv, "--workspace", str(plain)]) == 2
            assert "not a Fine-Tune Lens workspace" in capsys.readouterr().err
        assert sorted(p.name for p in plain.iterdir()) == ["notes"], "a database was written into it"
        # A real workspace (here: one with an ftlens.toml) still gets its store.
        ws = _workspace(tmp_path)
        assert main(["ratings", "progress", "--workspace", str(ws), "--campaign", "c"]) == 2
        assert (ws / ".ftlens" / "results.sqlite").is_file()
    else:
        plain = tmp_path / "plain"
        plain.mkdir()
        (plain / "notes.jsonl").write_text('{"text": "a note"}\n')
        summary = discover_workspace(plain)
        assert [d.name for d in summary.datasets] == ["notes"]  # it is looked at, fingerprints included
        assert sorted(p.name for p in plain.iterdir()) == ["notes.jsonl"], "discovery wrote into a non-workspace"
        run = tmp_path / "trainer_out"
        (run / "checkpoint-1").mkdir(parents=True)
        for f in tiny_gpt2[0].iterdir():
            (run / "checkpoint-1" / f.name).write_bytes(f.read_bytes())
        assert discover_workspace(run).checkpoints and (run / ".ftlens").is_dir()
        with open_rating_store(run) as store:
            assert store.campaigns() == []


# --- the live server (cases 15 and 16) --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app.py` as shipped (the repository's .streamlit/config.toml, no address flag)."""
    tmp = tmp_path_factory.mktemp("server")
    port = _free_port()
    env = {**os.environ, "FTLENS_DEMO_DIR": str(tmp / "no_demo"), "FTLENS_WORKSPACE": ""}
    log = open(tmp / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
         "--server.fileWatcherType=none"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streamlit did not start: {(tmp / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _shipped_config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("check", ["config", "upload_without_token", "upload_with_wrong_token"])
def test_case_15_xsrf_cors_and_size_limits(check, server):
    """The shipped config keeps XSRF and CORS protection on with explicit upload and message caps,
    and the running server refuses an upload PUT without a matching XSRF cookie and header (403)
    while the same request with them gets past the check (400: no such session)."""
    if check == "config":
        cfg = _shipped_config()
        assert cfg["enableXsrfProtection"] is True and cfg["enableCORS"] is True
        assert cfg["maxUploadSize"] == 50  # eval_core.rating_exchange.MAX_IMPORT_BYTES, in MB
        assert 0 < cfg["maxMessageSize"] <= 200
        return
    base = f"http://127.0.0.1:{server}"
    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=10) as r:  # the route that sets the cookie
        cookie = next(v for k, v in r.headers.items() if k.lower() == "set-cookie" and "_streamlit_xsrf=" in v)
    token = cookie.split("_streamlit_xsrf=", 1)[1].split(";", 1)[0]
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\r\na,b\r\n--b--\r\n"
    url = f"{base}/_stcore/upload_file/no-such-session/file-1"

    def put(headers: dict) -> int:
        return _status(urllib.request.Request(url, data=body, method="PUT", headers={
            "Content-Type": "multipart/form-data; boundary=b", **headers}))

    if check == "upload_without_token":
        assert put({}) == 403
    else:
        other = "2|" + base64.b16encode(b"abcd").decode().lower() + "|" + "00" * 32 + "|1"
        assert put({"Cookie": f"_streamlit_xsrf={token}", "X-Xsrftoken": other}) == 403
    assert put({"Cookie": f"_streamlit_xsrf={token}", "X-Xsrftoken": token}) == 400


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of listening TCP sockets on `port`, read from /proc (no connection made)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(addr)
                # /proc prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)) if width == 8 else str(ipaddress.IPv6Address(words)))
    return found


def _websocket_status(port: int, host: str) -> str:
    """The status line the server answers a WebSocket upgrade with, for a given Host header."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n").encode())
        return s.recv(1024).decode("latin-1").split("\r\n", 1)[0]


def _rating_workspace(tmp_path: Path) -> tuple[Path, CampaignSpec]:
    ws = _workspace(tmp_path)
    spec = CampaignSpec("demo", "set", "h", ("m1", "m2"), ("alice", "bob"), overlap=1, rubric=())
    items = [RatingItem(f"x{i}", f"prompt {i}", {"m1": "a", "m2": "b"}) for i in range(4)]
    with open_rating_store(ws) as store:
        store.create_campaign(spec, items)
    return ws, spec


@pytest.mark.parametrize("check", ["binds_loopback_only", "dns_rebinding_host_refused", "rater_identity",
                                   "other_addresses_refused_without_login", "team_mode_needs_sign_in"])
def test_case_16_no_team_mode_without_auth(check, server, tmp_path, monkeypatch):
    """Outside team mode a default launch listens on 127.0.0.1 only and refuses a WebSocket whose Host
    is not a loopback name (DNS rebinding); on the Rate page a rater's identity is picked from the
    campaign's rater list (no free-text field) and a write is accepted only for an item in that
    rater's own queue. Served on another address without team mode and a login, the app refuses to
    serve (tests/browser/test_team_flow.py); in team mode identities come from st.login or invite
    links and roles are enforced on the server (tests/app/test_team_mode.py)."""
    if check == "binds_loopback_only":
        cfg = _shipped_config()
        assert ipaddress.ip_address(cfg["address"]).is_loopback
        assert _listening_addresses(server) == {"127.0.0.1"}
    elif check in ("other_addresses_refused_without_login", "team_mode_needs_sign_in"):
        _case_16_team(check, tmp_path, monkeypatch)
    elif check == "dns_rebinding_host_refused":
        assert set(_shipped_config()["allowedHosts"]) <= {"localhost", "127.0.0.1"}
        assert " 101 " in _websocket_status(server, f"127.0.0.1:{server}")
        assert " 101 " not in _websocket_status(server, f"rebind.attacker.example:{server}")
    else:
        from streamlit.testing.v1 import AppTest

        ws, spec = _rating_workspace(tmp_path)
        monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
        monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo"))
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        at.switch_page("pages/rating.py").run()
        assert not at.exception, at.exception
        assert [t.label for t in at.main.text_input] == []  # nobody types a name in
        assert list(at.selectbox(key="rating_rater_demo").options) == list(spec.raters)
        with open_rating_store(ws) as store:
            alice_token = store.assignments("demo", "alice")[0].token
            with pytest.raises(EvalCoreError, match="not in bob's queue"):
                store.submit("demo", alice_token, "bob", "left")
            with pytest.raises(EvalCoreError, match="not in mallory's queue"):
                store.submit("demo", alice_token, "mallory", "left")
            assert store.submit("demo", alice_token, "alice", "left") is True


def _case_16_team(check: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    ws, _ = _rating_workspace(tmp_path)
    if check == "team_mode_needs_sign_in":
        (ws / "ftlens.toml").write_text('[team]\nadmins = ["lead@example.org"]\n', encoding="utf-8")
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo"))
    saved = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0" if check != "team_mode_needs_sign_in" else "127.0.0.1")
    try:
        for page in (None, "pages/rating.py", "pages/rating_results.py"):
            at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
            if page:
                at.switch_page(page).run()
            assert not at.exception, at.exception
            shown = " ".join(e.value for kind in ("title", "error", "info", "markdown") for e in getattr(at, kind))
            if check == "team_mode_needs_sign_in":  # unauthenticated: the sign-in screen, no ratings
                assert "prompt 0" not in shown and not at.selectbox and not at.radio, page
            else:
                assert "listens on 0.0.0.0" in shown and not at.selectbox and not at.title, page
    finally:
        config.set_option("server.address", saved)


# --- case 18: secrets ---------------------------------------------------------------------------------

REDACT_CASES = [
    ("postgresql+psycopg://u:s3cretPW@127.0.0.1:1/db", ["s3cretPW"]),
    ("postgresql+psycopg://u:s3cret@PW@host/db", ["s3cret", "PW@host"]),  # '@' inside the password
    ("postgresql+psycopg://u:s3cret%40PW@host/db", ["s3cret"]),
    ("postgresql+psycopg://u:s3cretPW@host:notaport/db", ["s3cretPW"]),  # SQLAlchemy raises ValueError here
    ("postgresql+psycopg://host/db?sslmode=require&password=s3cretPW", ["s3cretPW"]),
    ("postgresql+psycopg://u:s3c/retPW@host/db", ["s3c/retPW", "retPW"]),
]


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("where", ["redact", "store_error", "cli", "app", "exports", "gitignore"])
def test_case_18_database_password_never_shown(where, tmp_path, monkeypatch, capsys, caplog, request):
    """A database password (in the URL's user info or query) never appears in error messages,
    tracebacks, logs, CLI output, the app or exports; `redact` hides it even in URLs SQLAlchemy
    misparses; `.streamlit/secrets.toml` is git-ignored."""
    closed = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db"
    caplog.set_level(logging.DEBUG)
    ws = _workspace(tmp_path)
    if where == "redact":
        for url, fragments in REDACT_CASES:
            shown = redact(url)
            assert "***" in shown and not any(f in shown for f in fragments), (url, shown)
        assert redact("sqlite:////tmp/ws/.ftlens/results.sqlite") == "sqlite:////tmp/ws/.ftlens/results.sqlite"
    elif where == "store_error":
        monkeypatch.setenv(ENV_DATABASE_URL, closed)
        with pytest.raises(EvalCoreError) as err:
            open_rating_store(ws)
        assert "u:***@127.0.0.1:1/db" in str(err.value)
        assert PASSWORD not in _everything_said(err.value)
        # URLs SQLAlchemy cannot parse or load fail before any connection, and quote the URL.
        for url in (f"postgresql+psycopg://u:{PASSWORD}@host:notaport/db", f"nodriver://u:{PASSWORD}@host/db"):
            with pytest.raises(EvalCoreError) as err:
                ResultsStore(url)
            assert PASSWORD not in _everything_said(err.value) and "u:***@host" in str(err.value)
    elif where == "cli":
        monkeypatch.setenv(ENV_DATABASE_URL, closed)
        for argv in (["results"], ["ratings", "progress", "--campaign", "c"], ["forgetting"]):
            assert main([*argv, "--workspace", str(ws)]) == 2
            out = capsys.readouterr()
            assert PASSWORD not in out.out + out.err and out.err.startswith("error: ")
    elif where == "app":
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv(ENV_DATABASE_URL, closed)
        monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
        monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo"))
        for page in ("pages/metrics.py", "pages/rating.py", "pages/rating_results.py"):
            at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
            at.switch_page(page).run()
            assert not at.exception and at.error
            assert PASSWORD not in json.dumps([e.value for e in at.error] + [m.value for m in at.markdown])
    elif where == "exports":
        pg = request.getfixturevalue("fresh_postgres_db")  # the report reads every campaign in the store
        with_password = pg.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: accepted, unused
        monkeypatch.setenv(ENV_DATABASE_URL, with_password)
        ws = _evaluable_workspace(tmp_path, request.getfixturevalue("tiny_gpt2"))
        assert main(["evaluate", "--workspace", str(ws), "--metric", "perplexity"]) == 0
        assert main(["results", "--workspace", str(ws)]) == 0
        out = capsys.readouterr()
        assert PASSWORD not in out.out + out.err
        for fmt in ("json", "md", "html", "csv"):
            path = tmp_path / f"report.{fmt}"
            assert main(["report", "--workspace", str(ws), "--format", fmt, "--out", str(path)]) == 0
            if fmt == "csv":  # a zip of CSV tables
                with zipfile.ZipFile(path) as z:
                    assert all(PASSWORD.encode() not in z.read(n) for n in z.namelist())
            else:
                assert PASSWORD not in path.read_text(encoding="utf-8")
    else:
        ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=REPO)
        assert ignored.returncode == 0
    assert PASSWORD not in caplog.text


def _evaluable_workspace(tmp_path: Path, tiny_gpt2) -> Path:  # noqa: ANN001
    ws = tmp_path / "eval_ws"
    (ws / "base_model").mkdir(parents=True)
    for f in tiny_gpt2[0].iterdir():
        (ws / "base_model" / f.name).write_bytes(f.read_bytes())
    (ws / "heldout").mkdir()
    (ws / "heldout" / "general_text.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(["The order ships today.", "Hello."])))
    (ws / "ftlens.toml").write_text('base_model = "base_model"\n')
    return ws


# --- case 19: nothing user-controlled is unpickled ------------------------------------------------

UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def unpickling_sites(source: str, filename: str) -> list[str]:
    """Every place in `source` that could unpickle: imports of pickle-like modules, torch.load without
    weights_only=True, pandas read_pickle, numpy load with allow_pickle, and st.cache_data(persist=...)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{filename}:{node.lineno} import {n}" for n in names if n.split(".")[0] in UNPICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name, kw = _dotted(node.func), {k.arg: k.value for k in node.keywords}
        safe_torch = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
        if name.endswith("torch.load") and not (safe_torch and filename.endswith("eval_core/model_loading.py")):
            found.append(f"{filename}:{node.lineno} {name}")
        if name.split(".")[-1] in ("read_pickle", "Unpickler") or (name.endswith("load") and "allow_pickle" in kw):
            found.append(f"{filename}:{node.lineno} {name}")
        persist = kw.get("persist")
        if name.endswith("cache_data") and persist is not None and not (
                isinstance(persist, ast.Constant) and persist.value in (None, False)):
            found.append(f"{filename}:{node.lineno} {name}(persist=...)")
    return found


@pytest.mark.parametrize("target", ["app_and_library", "scanner_catches_each_pattern"])
def test_case_19_no_pickle_or_disk_cache_of_user_data(target):
    """No module of the app or library imports pickle/joblib/dill/cloudpickle/shelve/marshal, calls
    torch.load except model_loading's weights_only=True path, or persists st.cache_data to disk (we
    ship no pickle scanner: pickle weights are refused outright unless allow_pickle is given)."""
    if target == "app_and_library":
        files = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "eval_core").rglob("*.py"))]
        sites = [s for f in files for s in unpickling_sites(f.read_text(encoding="utf-8"), f.relative_to(REPO).as_posix())]
        assert sites == []
        loader = (REPO / "eval_core" / "model_loading.py").read_text(encoding="utf-8")
        assert "weights_only=True" in loader  # the one allowed unpickler is still the safe one
    else:
        bad = {
            "import pickle": 1, "from joblib import load": 1, "import dill.settings": 1,
            "torch.load(p)": 1, "torch.load(p, weights_only=False)": 1, "pd.read_pickle(p)": 1,
            "np.load(p, allow_pickle=True)": 1, "@st.cache_data(persist='disk')\ndef f(): pass": 1,
            "st.cache_data(ttl=30)": 0, "@st.cache_data(persist=None)\ndef f(): pass": 0,
        }
        for src, n in bad.items():
            assert len(unpickling_sites(src, "pages/x.py")) == n, src
        assert unpickling_sites("torch.load(p, weights_only=True)", "eval_core/model_loading.py") == []
