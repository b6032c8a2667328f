"""Model loading under attack: catalogue section 1, cases 1-11 (docs: reliability-cases.md).

Every test builds tiny REAL checkpoints (random-init GPT-2 saved with save_pretrained, a LoRA
adapter over it) and then the hostile variant of one file. What "nothing ran / nothing was read"
means is checked three ways: a sentinel file that a payload would create, Python audit events
(`pickle.find_class` is raised by every stdlib unpickler, `open` by every Python-level file open,
`socket.*` by every connection attempt), and `sys.modules`.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from eval_core import model_loading
from eval_core.checkpoints import find_checkpoint_files, inspect_checkpoint
from eval_core.errors import CheckpointError, EvalCoreError, UnsafeCheckpointError
from eval_core.fingerprints import fingerprint_files
from eval_core.generation import build_prompt
from eval_core.model_loading import load_model, open_model, release_model
from eval_core.safetensors_header import MAX_HEADER_BYTES, read_safetensors_header
from eval_core.workspace import discover_workspace

REPO = Path(__file__).resolve().parents[2]
IDS = torch.tensor([[5, 17, 42, 99, 3]])

# --- audit recorder -------------------------------------------------------------------------
# An audit hook cannot be removed, so one hook is installed for the module and records only
# inside `audited()`.
_WATCHED = ("open", "pickle.find_class", "os.system", "subprocess.Popen", "os.posix_spawn", "os.exec",
            "os.fork", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "import")
_recording: list[tuple[str, tuple]] | None = None


def _hook(event: str, args: tuple) -> None:
    rec = _recording
    if rec is not None and event in _WATCHED:
        rec.append((event, args))


sys.addaudithook(_hook)


class Audit(list):
    """The audit events seen inside `audited()`."""

    def of(self, *names: str) -> list[tuple]:
        return [args for event, args in self if event in names]

    def opened(self) -> list[str]:
        return [os.fsdecode(a[0]) for a in self.of("open") if isinstance(a[0], (str, bytes, os.PathLike))]

    def opened_under(self, folder: Path) -> list[str]:
        real = os.path.realpath(folder)
        return [p for p in self.opened() if os.path.realpath(p).startswith(real)]

    def ran_code(self) -> list[tuple]:
        return self.of("pickle.find_class", "os.system", "subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork")

    def network(self) -> list[tuple]:
        return self.of("socket.connect", "socket.getaddrinfo", "socket.gethostbyname")


@contextmanager
def audited() -> Iterator[Audit]:
    global _recording
    events = Audit()
    _recording = events
    try:
        yield events
    finally:
        _recording = None


@pytest.fixture(autouse=True)
def _free_models():
    yield
    release_model()
    model_loading._last_tokenizer = None  # a cached tokenizer must not hide a hostile one


# --- hostile payloads -----------------------------------------------------------------------
class Evil:
    """Unpickling this runs a shell command that creates the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def save_evil(path: Path, sentinel: Path) -> None:
    torch.save({"transformer.wte.weight": Evil(sentinel)}, path)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def set_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def foreign_modules(folder: Path) -> list[str]:
    """Modules loaded from files under `folder`, or from transformers' remote-code package."""
    real = os.path.realpath(folder)
    return [name for name, mod in list(sys.modules.items())
            if "transformers_modules" in name or "evil" in name
            or os.path.realpath(getattr(mod, "__file__", None) or "/nonexistent").startswith(real)]


TRAINER_PICKLES = ("optimizer.pt", "rng_state.pth", "training_args.bin")


# --- case 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "model.ckpt",
                                  "adapter_model.bin", *TRAINER_PICKLES])
def test_case_01_malicious_pickle_refused(name, tiny_adapter, tmp_path):
    """A pickle whose __reduce__ runs os.system is refused before unpickling in every named file,
    and discovering, inspecting or fingerprinting a folder never unpickles trainer-state pickles."""
    adapter_dir, base_dir, _ = tiny_adapter
    sentinel = tmp_path / "pwned"
    with audited() as audit:
        if name == "adapter_model.bin":
            (adapter_dir / "adapter_model.safetensors").unlink()
            save_evil(adapter_dir / name, sentinel)
            with pytest.raises(UnsafeCheckpointError, match="pickle weights can run arbitrary code") as err:
                load_model(adapter_dir, base_model=base_dir)
            assert err.value.path == str(adapter_dir / name)
        elif name in TRAINER_PICKLES:
            # Beside safetensors weights: never weights, never read as pickle, not even with opt-in.
            save_evil(base_dir / name, sentinel)
            ws = tmp_path / "ws"
            shutil.copytree(base_dir, ws / "runs" / "r" / "checkpoint-5")
            workspace = discover_workspace(ws)
            assert [c.name for c in workspace.checkpoints] == ["checkpoint-5"], workspace.problems
            rec = inspect_checkpoint(base_dir, root=tmp_path, name="c", run=None)
            assert rec.weight_format == "safetensors"
            assert name not in {f.name for f in find_checkpoint_files(base_dir).weight_files}
            all_files = sorted(p for p in base_dir.iterdir())
            fingerprint_files(base_dir, all_files)  # hashing bytes is not unpickling
            with open_model(base_dir, allow_pickle=True) as lm:
                assert lm.files.weight_format == "safetensors"
            # Alone, they are not weights: a clear error, still without unpickling.
            (base_dir / "model.safetensors").unlink()
            with pytest.raises(CheckpointError, match="no weights"):
                load_model(base_dir, allow_pickle=True)
        else:
            (base_dir / "model.safetensors").unlink()
            save_evil(base_dir / name, sentinel)
            rec = inspect_checkpoint(base_dir, root=tmp_path, name="c", run=None)
            assert (rec.weight_format, rec.parameter_count) == ("pickle", None)  # counted without unpickling
            with pytest.raises(UnsafeCheckpointError, match="pickle weights can run arbitrary code") as err:
                load_model(base_dir)
            assert err.value.path == str(base_dir / name)
    assert not sentinel.exists()
    assert audit.ran_code() == []


# --- case 2 -------------------------------------------------------------------------------------
@pytest.fixture
def torch_load_calls(monkeypatch) -> list[dict]:
    """Every torch.load call's keyword arguments; the real torch.load still runs."""
    calls: list[dict] = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.mark.parametrize(("payload", "torch_version", "outcome"), [
    ("state_dict", None, "loads"),
    ("state_dict", "2.10.0+cpu", "loads"),
    ("evil", None, "weights-only"),
    ("state_dict", "2.5.1", "too old"),   # CVE-2025-32434: weights_only=True still runs code
    ("state_dict", "2.9.1", "too old"),   # GHSA-63cw-57p8-fm3p: unpickler memory corruption
    ("evil", "2.4.0", "too old"),
], ids=["current-torch", "torch-2.10", "evil-opt-in", "torch-2.5.1", "torch-2.9.1", "evil-torch-2.4"])
def test_case_02_pickle_opt_in_weights_only(payload, torch_version, outcome, tiny_gpt2, tmp_path, monkeypatch,
                                            torch_load_calls):
    """With allow_pickle, pickle weights are read only by torch.load(weights_only=True) on
    torch >= 2.10; an older torch is refused with a version error before torch.load runs."""
    assert model_loading.MIN_TORCH_FOR_PICKLE >= (2, 6)
    folder, model = tiny_gpt2
    sentinel = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    if payload == "evil":
        save_evil(folder / "pytorch_model.bin", sentinel)
    else:
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    if torch_version:
        monkeypatch.setattr(torch, "__version__", torch_version)
    with audited() as audit:
        if outcome == "loads":
            with open_model(folder, allow_pickle=True) as lm:
                assert torch.equal(logits(lm.model), logits(model))
        else:
            with pytest.raises(UnsafeCheckpointError, match=outcome) as err:
                load_model(folder, allow_pickle=True)
            assert err.value.path == str(folder / "pytorch_model.bin")
    if outcome == "too old":
        assert torch_load_calls == [] and "torch>=2.10" in str(err.value)
    else:
        assert torch_load_calls and all(c.get("weights_only") is True for c in torch_load_calls)
    assert not sentinel.exists() and audit.ran_code() == []


# --- case 3 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "y", "yes", "true", "TRUE", "subprocess"])
def test_case_03_force_no_weights_only_env(value, tiny_gpt2, tmp_path, monkeypatch, torch_load_calls):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (any value torch reads as true, also in a fresh process)
    makes pickle loading refuse, naming the variable; torch.load never runs, the payload never runs."""
    folder, _ = tiny_gpt2
    sentinel = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    save_evil(folder / "pytorch_model.bin", sentinel)
    if value == "subprocess":
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": str(REPO)}
        # The pickle gate alone (what load_model calls per file), so the child imports only torch.
        code = ("import sys, pathlib; from eval_core.model_loading import _torch_load_weights_only\n"
                "try:\n    _torch_load_weights_only(pathlib.Path(sys.argv[1]))\n"
                "except Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(folder / "pytorch_model.bin")], env=env, capture_output=True, text=True,
                              cwd=REPO, check=False)
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert proc.stdout.startswith("UnsafeCheckpointError") and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in proc.stdout
    else:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", value)
        with pytest.raises(UnsafeCheckpointError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
            load_model(folder, allow_pickle=True)
        assert torch_load_calls == []
    assert not sentinel.exists()


def test_case_03_force_weights_only_env_is_harmless(tiny_gpt2, monkeypatch, torch_load_calls):
    """The opposite switch, TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, only makes torch stricter: loads work."""
    folder, model = tiny_gpt2
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with open_model(folder, allow_pickle=True) as lm:
        assert torch.equal(logits(lm.model), logits(model))
    assert [c.get("weights_only") for c in torch_load_calls] == [True]


# --- case 4 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["config-auto_map", "tokenizer-auto_map", "adapter-auto_map",
                                     "base-config-auto_map", "unknown-architecture", "custom-tokenizer-class"])
def test_case_04_remote_code_refused(variant, tiny_adapter, tmp_path):
    """auto_map or a custom architecture/tokenizer class is refused with a clear error and no .py
    shipped with the checkpoint is imported (sys.modules unchanged, sentinel not created); an unknown
    tokenizer_class without auto_map falls back to a transformers class, still importing nothing."""
    adapter_dir, base_dir, _ = tiny_adapter
    sentinel = tmp_path / "imported"
    payload = f"open({str(sentinel)!r}, 'w').write('x')\nclass EvilModel: pass\nclass EvilTokenizer: pass\n"
    for folder in (base_dir, adapter_dir):
        for mod in ("modeling_evil.py", "tokenization_evil.py", "configuration_evil.py"):
            (folder / mod).write_text(payload)
    target, kwargs, error, needle = base_dir, {}, UnsafeCheckpointError, "trust_remote_code"
    if variant == "config-auto_map":
        set_json(base_dir / "config.json", auto_map={"AutoModelForCausalLM": "modeling_evil.EvilModel",
                                                     "AutoConfig": "configuration_evil.EvilConfig"})
    elif variant == "tokenizer-auto_map":
        set_json(base_dir / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
    elif variant == "adapter-auto_map":
        set_json(adapter_dir / "adapter_config.json", auto_map={"base_model_class": "modeling_evil.EvilModel"})
        target, kwargs = adapter_dir, {"base_model": base_dir}
    elif variant == "base-config-auto_map":
        set_json(base_dir / "config.json", auto_map={"AutoModelForCausalLM": "modeling_evil.EvilModel"})
        target, kwargs = adapter_dir, {"base_model": base_dir}
    elif variant == "unknown-architecture":  # no auto_map: transformers must not go looking for code
        set_json(base_dir / "config.json", model_type="evil", architectures=["EvilModel"])
        error, needle = CheckpointError, "could not load"
    else:  # no auto_map: transformers falls back to its own class built from tokenizer.json
        set_json(base_dir / "tokenizer_config.json", tokenizer_class="EvilTokenizer")
        error = None
    before = set(sys.modules)
    with audited() as audit:
        if error is None:
            with open_model(target) as lm:
                assert type(lm.tokenizer).__module__.startswith("transformers.")
        else:
            with pytest.raises(error, match=needle) as err:
                load_model(target, **kwargs)
            assert str(target) in str(err.value) or str(base_dir) in str(err.value)
            assert error is CheckpointError or err.value.field == "auto_map"
    assert not sentinel.exists()
    assert foreign_modules(tmp_path) == [] and not any("evil" in m for m in set(sys.modules) - before)
    assert [a for a in audit.of("import") if "evil" in str(a[0])] == []


# --- case 5 -------------------------------------------------------------------------------------
SSTI = {
    "lipsum-popen-id": '{{ lipsum.__globals__["os"].popen("id").read() }}',
    "lipsum-writes-sentinel": '{{ lipsum.__globals__["os"].popen("touch SENTINEL").read() }}',
    "cycler-system": '{{ cycler.__init__.__globals__.os.system("touch SENTINEL") }}',
    "template-reference": '{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen("id").read() }}',
    "subclasses-walk": "{% for m in messages %}{{ m.content.__class__.__mro__[1].__subclasses__() }}{% endfor %}",
}


@pytest.mark.parametrize("where", ["tokenizer_config", "chat_template.jinja"])
@pytest.mark.parametrize("name", list(SSTI))
def test_case_05_chat_template_ssti(name, where, tiny_gpt2, tmp_path):
    """A chat template reaching for Python internals is stopped by the Jinja sandbox
    (SecurityError), wrapped as UnsafeCheckpointError on field chat_template; nothing runs, and no
    page or report displays a template, so it is never rendered as markup."""
    folder, _ = tiny_gpt2
    sentinel = tmp_path / "ssti"
    template = SSTI[name].replace("SENTINEL", str(sentinel))
    if where == "tokenizer_config":
        set_json(folder / "tokenizer_config.json", chat_template=template)
    else:
        (folder / "chat_template.jinja").write_text(template)
    with open_model(folder) as lm, audited() as audit:
        assert lm.tokenizer.chat_template == template  # loaded as plain text, not run
        with pytest.raises(UnsafeCheckpointError, match="sandbox") as err:
            build_prompt(lm.tokenizer, "hello")
    from jinja2.exceptions import SecurityError

    assert isinstance(err.value.__cause__, SecurityError)
    assert err.value.field == "chat_template" and str(folder) in str(err.value)
    assert "uid=" not in str(err.value) and template not in str(err.value)
    assert not sentinel.exists() and audit.ran_code() == []
    shown = [p for p in [REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "eval_core").glob("report*.py")]
             if "chat_template" in p.read_text(encoding="utf-8")]
    assert shown == []  # no UI or report surface shows a template


def test_case_05_plain_template_still_renders(tiny_gpt2):
    """Control: an ordinary chat template renders through the same sandboxed path."""
    folder, _ = tiny_gpt2
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}Customer: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}Agent:{% endif %}")
    with open_model(folder) as lm:
        assert build_prompt(lm.tokenizer, "Where is it?") == "Customer: Where is it?\nAgent:"


# --- case 6 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["rag-index_path-url", "rag-passages_path-dotdot", "rag-model_type",
                                     "peft-base-hub-id", "peft-base-dotdot"])
def test_case_06_config_points_outside(variant, tiny_adapter, tmp_path):
    """Config values naming external files or hub ids (RAG index_path/passages_path, PEFT
    base_model_name_or_path) never cause a network call or a read outside the allowed folders; RAG
    keys are refused with an error naming the key, an adapter's base comes only from base_model."""
    adapter_dir, base_dir, peft_model = tiny_adapter
    outside = tmp_path / "outside"
    shutil.copytree(base_dir, outside)  # a loadable model a loader might be tempted to open
    (outside / "passages").write_text("secret")
    with audited() as audit:
        if variant.startswith("rag"):
            key, value = (("index_path", "https://evil.example/index.pkl") if variant == "rag-index_path-url"
                          else ("passages_path", "../outside/passages"))
            changes = {"index_name": "custom", key: value}
            if variant == "rag-model_type":
                changes["model_type"] = "rag"
            set_json(base_dir / "config.json", **changes)
            for call in (lambda: find_checkpoint_files(base_dir), lambda: load_model(base_dir)):
                with pytest.raises(UnsafeCheckpointError, match="external file") as err:
                    call()
                assert err.value.field == key and err.value.path == str(base_dir / "config.json")
        else:
            ref = "evil-org/evil-model" if variant == "peft-base-hub-id" else "../outside"
            set_json(adapter_dir / "adapter_config.json", base_model_name_or_path=ref)
            with pytest.raises(CheckpointError, match="never fetched") as err:
                load_model(adapter_dir)
            assert err.value.field == "base_model"
            with open_model(adapter_dir, base_model=base_dir) as lm:  # the named base, not the config's
                assert torch.allclose(logits(lm.model), logits(peft_model), atol=1e-6)
    assert audit.network() == []
    assert audit.opened_under(outside) == []


# --- case 7 -------------------------------------------------------------------------------------
def _header_file(path: Path, header: dict | bytes, buffer: bytes = b"", declared: int | None = None,
                 sparse_to: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + buffer)
    if sparse_to is not None:
        with path.open("r+b") as fh:
            fh.truncate(sparse_to)  # a hole: no disk, no memory, but st_size says sparse_to


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
HEADERS = {
    "len-past-eof": (dict(header={"a": F32x2}, buffer=b"\0" * 8, declared=10**9), "header claims"),
    "len-2^63": (dict(header={"a": F32x2}, buffer=b"\0" * 8, declared=2**63), "header claims"),
    "len-2^64-1": (dict(header={"a": F32x2}, buffer=b"\0" * 8, declared=2**64 - 1), "header claims"),
    "len-4GB": (dict(header={"a": F32x2}, buffer=b"\0" * 8, declared=4 * 2**30), "header claims"),
    "len-over-cap-in-sparse-file": (dict(header=b"{", declared=MAX_HEADER_BYTES + 1,
                                         sparse_to=MAX_HEADER_BYTES + 4096), "limit 104857600"),
    "negative-offset": (dict(header={"a": {**F32x2, "data_offsets": [-8, 0]}}, buffer=b"\0" * 8), "outside"),
    "offset-past-buffer": (dict(header={"a": {**F32x2, "data_offsets": [0, 8]}}, buffer=b"\0" * 4), "outside"),
    "overlapping": (dict(header={"a": {**F32x2, "data_offsets": [0, 8]}, "b": {**F32x2, "data_offsets": [4, 12]}},
                         buffer=b"\0" * 12), "overlaps"),
    "shape-mismatch": (dict(header={"a": {**F32x2, "shape": [1000, 1000]}}, buffer=b"\0" * 8), "needs"),
    "truncated-in-header": (dict(header=b'{"a": {"dtype": "F3', declared=200), "header claims"),
    "nested-json-bomb": (dict(header=b"[" * 200_000 + b"]" * 200_000), "nests too deeply"),
}


@pytest.mark.parametrize("name", [*HEADERS, "truncated-real-file"])
def test_case_07_safetensors_header_abuse(name, tiny_gpt2, tmp_path):
    """Each hostile safetensors header (lengths past EOF, 2^63, 4 GB, over the 100 MB cap; negative,
    out-of-file, overlapping, shape-mismatched offsets; truncated file; JSON nesting bomb) gives a
    specific CheckpointError naming the file, from the header reader and from load_model, reading
    at most the capped header into memory; the process stays alive."""
    assert MAX_HEADER_BYTES == 100 * 1024 * 1024
    folder, _ = tiny_gpt2
    path = folder / "model.safetensors"
    if name == "truncated-real-file":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        needle = "outside"
    else:
        spec, needle = HEADERS[name]
        _header_file(path, **spec)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=needle) as err:
            read_safetensors_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.path == str(path)
    assert peak < 16 * 2**20  # never the claimed header size (MB-scale at most, for the nesting bomb)
    with pytest.raises(CheckpointError, match=needle) as err:
        load_model(folder)
    assert err.value.path == str(path)


# --- case 8 -------------------------------------------------------------------------------------
BOMB_BYTES = 64 * 2**20  # 64 MB of zeros deflate to about 64 KB; the attack scripts use 40 GB


def torch_zip_bomb(path: Path) -> None:
    """safetensors' attacks/torch_dos_create.py, scaled down: a torch archive with a deflated,
    hugely compressible storage record."""
    plain = io.BytesIO()
    torch.save({"transformer.wte.weight": torch.zeros(2, 2)}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        prefix = src.namelist()[0].split("/")[0]
        for name in ("data.pkl", "version"):
            out.writestr(f"{prefix}/{name}", src.read(f"{prefix}/{name}"))
        with out.open(f"{prefix}/data/0", "w", force_zip64=True) as f:
            for _ in range(BOMB_BYTES // 2**20):
                f.write(b"\0" * 2**20)


def numpy_zip_bomb(path: Path) -> None:
    """safetensors' attacks/numpy_dos_create.py, scaled down."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        with out.open("weights.npy", "w", force_zip64=True) as f:
            for _ in range(BOMB_BYTES // 2**20):
                f.write(b"\0" * 2**20)


@pytest.mark.parametrize("variant", ["torch-bomb", "npz-bomb-as-npz", "npz-bomb-as-bin", "legacy-format"])
def test_case_08_zip_bombs_refused(variant, tiny_gpt2, tmp_path, torch_load_calls):
    """Zip bombs are refused: by default pickle and npz are never opened; with allow_pickle a
    torch archive is checked from its zip directory (compressed entries or sizes beyond the file
    are refused) before torch.load, so nothing is inflated."""
    folder, model = tiny_gpt2
    (folder / "model.safetensors").unlink()
    name = {"npz-bomb-as-npz": "model.npz"}.get(variant, "pytorch_model.bin")
    bomb = folder / name
    if variant == "torch-bomb":
        torch_zip_bomb(bomb)
    elif variant == "legacy-format":  # pre-1.6 format: storage sizes come from the pickle itself
        torch.save(model.state_dict(), bomb, _use_new_zipfile_serialization=False)
    else:
        numpy_zip_bomb(bomb)
    if variant != "legacy-format":
        with zipfile.ZipFile(bomb) as archive:
            assert sum(i.file_size for i in archive.infolist()) >= BOMB_BYTES  # it is a real bomb
    with audited() as audit:
        if variant == "npz-bomb-as-npz":
            for allow in (False, True):
                with pytest.raises(CheckpointError, match="no weights"):
                    load_model(folder, allow_pickle=allow)
        else:
            with pytest.raises(UnsafeCheckpointError, match="allow_pickle"):
                load_model(folder)
            with pytest.raises(UnsafeCheckpointError, match="zip bomb" if "bomb" in variant else "legacy") as err:
                load_model(folder, allow_pickle=True)
            assert err.value.path == str(bomb)
    assert torch_load_calls == []
    if variant == "npz-bomb-as-npz":
        assert audit.opened_under(bomb) == []  # not even opened


# --- case 9 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("entry", "target"), [
    ("model.safetensors", "/etc/passwd"),
    ("config.json", "/etc/passwd"),
    ("chat_template.jinja", "/etc/passwd"),
    ("tokenizer.json", "/dev/zero"),
    ("pytorch_model.bin", "/dev/zero"),
    ("additional_chat_templates/tool_use.jinja", "/etc/passwd"),  # a subfolder transformers reads by name
    ("model.safetensors", "inside-workspace"),
])
def test_case_09_symlink_escape(entry, target, tiny_gpt2, tmp_path):
    """A symlink in a checkpoint folder to /etc/passwd or a device (/dev/zero) is refused before any
    read with an error naming the entry; a link inside the workspace is followed only when the
    workspace is given as root."""
    folder, model = tiny_gpt2
    ws = tmp_path  # the fixture's folder lives at ws/tiny-gpt2
    if target == "inside-workspace":
        real = ws / "shared" / entry
        real.parent.mkdir()
        (folder / entry).rename(real)
        (folder / entry).symlink_to(real)
        with open_model(folder, root=ws) as lm:  # followed: it stays inside the workspace
            assert torch.equal(logits(lm.model), logits(model))
        assert find_checkpoint_files(folder, ws).weight_files == (folder / entry,)
        target_path = real
    else:
        target_path = Path(target)
        (folder / entry).parent.mkdir(exist_ok=True)
        (folder / entry).unlink(missing_ok=True)
        (folder / entry).symlink_to(target_path)
    with audited() as audit:
        # Without a root, the folder itself is the fence; with the workspace as root, the outside
        # targets are still outside.
        calls = [lambda: load_model(folder), lambda: inspect_checkpoint(folder, root=folder, name="c", run=None)]
        if target != "inside-workspace":
            calls += [lambda: load_model(folder, root=ws), lambda: find_checkpoint_files(folder, ws)]
        for call in calls:
            with pytest.raises(CheckpointError, match=f"'{entry}' (links|is not)") as err:
                call()
            assert err.value.field == entry and err.value.path == str(folder)
    assert audit.opened_under(target_path) == []


# --- case 10 ------------------------------------------------------------------------------------
@pytest.fixture
def sharded_gpt2(tmp_path, tiny_tokenizer):
    """(folder, model) of a tiny GPT-2 saved in several safetensors shards."""
    from tests.conftest import make_tiny_gpt2

    folder = tmp_path / "sharded"
    model = make_tiny_gpt2(tmp_path / "single", tiny_tokenizer)
    model.save_pretrained(folder, max_shard_size="60KB")
    tiny_tokenizer.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("variant", ["missing-shard", "shard-dotdot", "shard-absolute", "tensor-not-in-shard",
                                     "tensor-missing-single-file"])
def test_case_10_sharded_checkpoint_incomplete(variant, sharded_gpt2, tmp_path):
    """A shard missing, outside the folder, or not holding what the index says, and a single file
    missing a tensor: a clear error naming the shard (or tensor); a partial model is never used."""
    from safetensors.torch import load_file, save_file

    folder, model = sharded_gpt2
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    with open_model(folder) as lm:  # control: the intact sharded checkpoint loads exactly
        assert torch.equal(logits(lm.model), logits(model))
    victim = shards[-1]
    tensor = next(t for t, s in index["weight_map"].items() if s == victim)
    (tmp_path / "outside.safetensors").write_bytes((folder / victim).read_bytes())
    if variant == "missing-shard":
        (folder / victim).unlink()
        needle, named = victim, victim
    elif variant in ("shard-dotdot", "shard-absolute"):
        named = "../outside.safetensors" if variant == "shard-dotdot" else str(tmp_path / "outside.safetensors")
        index["weight_map"] = {t: (named if s == victim else s) for t, s in index["weight_map"].items()}
        index_path.write_text(json.dumps(index))
        needle = "outside the checkpoint folder"
    elif variant == "tensor-not-in-shard":
        state = load_file(folder / victim)
        del state[tensor]
        save_file(state, folder / victim, metadata={"format": "pt"})
        needle, named = "does not hold it", victim
    else:
        for f in [index_path, *(folder / s for s in shards)]:
            f.unlink()
        state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied: stored once
        del state[tensor]
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"})
        needle, named = "lack or mis-shape", tensor
    calls = [lambda: load_model(folder)]
    if variant != "tensor-missing-single-file":  # headers alone cannot tell a tensor is missing
        calls.append(lambda: inspect_checkpoint(folder, root=tmp_path, name="s", run=None))
    with audited() as audit:
        for call in calls:
            with pytest.raises(CheckpointError, match=needle) as err:
                call()
            assert named in str(err.value)
    assert audit.opened_under(tmp_path / "outside.safetensors") == []
    assert model_loading._current is None  # nothing half-loaded stays around


@pytest.mark.parametrize("fmt", ["safetensors", "pickle-opt-in"])
def test_case_10_adapter_missing_tensors_is_refused(fmt, tiny_adapter):
    """A LoRA adapter file lacking some of its tensors (peft would only warn and leave them at their
    initial values) is refused, naming the file; the intact adapter loads."""
    from safetensors.torch import load_file

    folder, base_dir, _ = tiny_adapter
    with open_model(folder, base_model=base_dir):
        pass  # control
    path = folder / "adapter_model.safetensors"
    state = load_file(path)
    del state[sorted(state)[0]]
    path.unlink()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(state, folder / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="lacks tensors") as err:
        load_model(folder, base_model=base_dir, allow_pickle=fmt != "safetensors")
    assert "adapter_model" in str(err.value)
    assert model_loading._current is None


# --- case 11 ------------------------------------------------------------------------------------
def _malformed_memo_archive(path: Path, model) -> None:
    """A real torch archive whose data.pkl reads an empty memo slot (the trick that crashed
    modelscan into reporting 0 issues, protectai/modelscan#348)."""
    plain = io.BytesIO()
    torch.save(model.state_dict(), plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = b"\x80\x02h\x07." if info.filename.endswith("data.pkl") else src.read(info)
            out.writestr(info, data)


@pytest.mark.parametrize("payload", ["state_dict", "evil", "malformed-memo", "raw-pickle"])
def test_case_11_no_scanner_pickle_refused(payload, tiny_gpt2, tmp_path, torch_load_calls):
    """We ship no pickle scanner, so there is no verdict to fail open: eval_core has no scan code
    and refuses every pickle by format, whatever it holds; with allow_pickle, anything torch's
    weights-only unpickler cannot read (crafted memo, bare pickle) is refused, never called clean."""
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "eval_core").rglob("*.py")}
    for p, text in sources.items():
        for banned in ("modelscan", "picklescan", "fickling", "pickletools"):
            assert banned not in text, f"{p} mentions {banned}"
        names = {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not [n for n in names if "scan" in n.lower()], p
    folder, model = tiny_gpt2
    sentinel = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    weights = folder / "pytorch_model.bin"
    if payload == "state_dict":
        torch.save(model.state_dict(), weights)
    elif payload == "evil":
        save_evil(weights, sentinel)
    elif payload == "malformed-memo":
        _malformed_memo_archive(weights, model)
    else:
        weights.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00h\x07.")
    with audited() as audit:
        with pytest.raises(UnsafeCheckpointError, match="pickle weights can run arbitrary code"):
            load_model(folder)  # refused by format, identically for a harmless state dict
        assert torch_load_calls == []
        if payload == "state_dict":
            with open_model(folder, allow_pickle=True) as lm:
                assert torch.equal(logits(lm.model), logits(model))
        else:
            with pytest.raises(UnsafeCheckpointError, match="weights-only unpickler|not a torch zip archive"):
                load_model(folder, allow_pickle=True)
    assert not sentinel.exists() and audit.ran_code() == []
    assert issubclass(UnsafeCheckpointError, EvalCoreError)
