"""Architecture rules: eval_core never imports Streamlit; every page is registered; pages stay thin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_eval_core_source_never_imports_streamlit():
    offenders = [p.name for p in (REPO / "eval_core").rglob("*.py") if "streamlit" in _imports(p)]
    assert offenders == []


def test_importing_eval_core_loads_neither_streamlit_nor_torch():
    # torch costs ~2 s to import; the app must start fast and import it only for model work.
    code = "import sys, eval_core, eval_core.cli; print('streamlit' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_page_file_is_registered_in_app():
    app = (REPO / "app.py").read_text(encoding="utf-8")
    pages = sorted(p for p in (REPO / "pages").glob("*.py") if not p.name.startswith("_"))
    assert pages, "no pages found"
    for page in pages:
        assert f'"pages/{page.name}"' in app, f"{page.name} is not in app.py's st.navigation"


def test_pages_do_not_touch_models_or_files_directly():
    for page in (REPO / "pages").glob("*.py"):
        assert not _imports(page) & {"torch", "transformers", "peft", "safetensors", "json", "csv"}, page.name


def test_no_module_is_a_grab_bag():
    names = {p.stem for p in (REPO / "eval_core").rglob("*.py")}
    assert not names & {"utils", "helpers", "misc", "common"}
    too_long = [p.name for p in (REPO / "eval_core").rglob("*.py") if len(p.read_text().splitlines()) > 450]
    assert too_long == []


def test_no_page_url_path_equals_a_file_stem_in_pages():
    # See the comment above PAGE_SPECS in app.py: such a path would rerun the page without app.py.
    import re

    app = (REPO / "app.py").read_text(encoding="utf-8")
    specs = re.findall(r'\("pages/(\w+)\.py", "[^"]+", "[^"]+", "([^"]+)"\)', app)
    url_paths = [u for _, u in specs]
    assert sorted(f for f, _ in specs) == sorted(p.stem for p in (REPO / "pages").glob("*.py") if not p.name.startswith("_"))
    assert "url_path=u" in app, "every st.Page gets its explicit url_path from PAGE_SPECS"
    stems = {p.stem for p in (REPO / "pages").glob("*.py")}
    assert not set(url_paths) & stems
