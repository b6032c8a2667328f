"""Catalogue section 2 (dashboard server), cases 13, 14, 17 and 20: rendering and uploads.

- 13: attack payloads in prompts, references, model outputs and rater comments show as text on every
  page and in every export (HTML, Markdown, JSON, CSV); no `unsafe_allow_html`/`st.html` on anything
  but a literal.
- 14: names with HTML or Streamlit Markdown (`:red[x]`, `$$x$$`, `**b**`) in a workspace folder, run
  folder, dataset column, category, rubric criterion, rater and imported model show literally.
- 17: judgments uploads that are too large, binary (zip, xlsx, gzip, pickle) or named `../../x.csv`
  are refused or parsed in memory, never saved under the uploaded name.
- 20: cells starting with = + - @ tab CR are neutralised in every CSV the app or the CLI writes.

The workspace is built once, by the real APIs: two tiny GPT-2 checkpoints in a run whose folder name
is markup, a generation set whose prompts/references/categories are payloads, outputs evaluated and
then replaced by payloads in the results store (as a hostile model would write them), a rated campaign
with hostile comments, rubric and rater name, and an imported campaign with hostile model names.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import pickle
import re
import shutil
import sqlite3
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from eval_core.errors import EvalCoreError
from eval_core.rating_exchange import MAX_IMPORT_BYTES, export_text, import_judgments, parse_judgments_csv
from eval_core.rating_setup import create_campaign, open_rating_store
from tests.conftest import make_tiny_gpt2

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<iframe src=http://evil.example/x></iframe>",
            "[x](javascript:alert(1))", "<style>body{display:none}</style>", "![t](http://evil.example/a.png)")
FORMULAS = ('=HYPERLINK("http://evil.example","x")', "+1+1", "-1+cmd|' /C calc'!A0", "@SUM(A1:A2)", "\t=1+1", "\r=1+1")
MARKUP = ":red[x] $$x$$ **b** <b>h</b>"  # Streamlit colour directive, LaTeX, bold, HTML
WS_NAME = "ws :red[x] $$x$$ **b** <b>h"  # folder names: no "/" of a closing tag
RUN_NAME = "run :red[x] $$x$$ **b** <b>h"
CATEGORIES = (f"cat {MARKUP}", "cat <i>i</i> [c](javascript:alert(1))")
COLUMN = f"col {MARKUP}"  # a dataset column name that maps to no role
RUBRIC = f"fluency {MARKUP}"
RATERS = ("ann _b_", "ben")  # rater names allow only letters, digits, space . _ -: "_b_" is italic
IMPORTED_MODELS = (f"m {MARKUP}", "<img src=x onerror=alert(2)>")
RAW_HTML = re.compile(r"<\s*/?\s*(script|img|iframe|style|b|i|a)\b", re.I)


# ---------------------------------------------------------------- the hostile workspace


@pytest.fixture(scope="module")
def hostile_ws(tmp_path_factory, tiny_tokenizer) -> Path:
    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig

    root = tmp_path_factory.mktemp("rendering") / WS_NAME
    run = root / "runs" / RUN_NAME
    for step in (1, 2):
        make_tiny_gpt2(run / f"checkpoint-{step}", tiny_tokenizer, seed=step)
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": [
        {"step": 1, "epoch": 0.5, "loss": 2.0}, {"step": 1, "epoch": 0.5, "eval_loss": 2.5},
        {"step": 2, "epoch": 1.0, "loss": 1.5}, {"step": 2, "epoch": 1.0, "eval_loss": 2.4}]}))
    (root / "heldout").mkdir()
    rows = [{"id": f"e{i}", "category": CATEGORIES[i % 2], "prompt": p, "reference": f"{FORMULAS[i]} {p}"}
            for i, p in enumerate(PAYLOADS)]
    (root / "heldout" / "support.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "heldout" / "odd.jsonl").write_text(json.dumps({COLUMN: "x"}) + "\n")  # no role: a workspace problem
    (root / "train_data").mkdir()  # the first three held-out rows leak: the Data page shows them
    (root / "train_data" / "train.jsonl").write_text("".join(json.dumps(
        {"id": f"t{i}", "category": CATEGORIES[i % 2], "prompt": p, "response": f"{FORMULAS[i]} {p}"}) + "\n"
        for i, p in enumerate(PAYLOADS[:3])))
    evaluate_workspace(root, dataset_names=["support"], metric_names=["chrf"], generation_config=GenerationConfig(max_new_tokens=3))
    with sqlite3.connect(root / ".ftlens" / "results.sqlite") as db:  # what a hostile model would have written
        for i, p in enumerate(PAYLOADS):
            db.execute("UPDATE generations SET text = ? || ' ' || substr(checkpoint_fp, -4) WHERE example_id = ?",
                       (f"{FORMULAS[i]} {p}", f"e{i}"))
    create_campaign(root, "team", ["checkpoint-1", "checkpoint-2"], list(RATERS), overlap=2, rubric=[RUBRIC])
    with open_rating_store(root) as store:
        k = 0
        for n, rater in enumerate(RATERS):
            while (item := store.next_item("team", rater)) is not None:
                if rater == RATERS[0] and k == 5:
                    break  # one item left, so the Rate page shows it to this rater
                k += 1
                store.submit("team", item.token, rater, ("left", "right")[(k + n) % 2], {},
                             f"{FORMULAS[k % 6]} {PAYLOADS[k % 6]}", f"{FORMULAS[(k + 1) % 6]} {PAYLOADS[(k + 1) % 6]}")
        judgments = "item_id,rater,model_a,model_b,winner,category\n" + "".join(
            f'i{i},r1,"{IMPORTED_MODELS[0]}",{IMPORTED_MODELS[1]},model_a,{CATEGORIES[0]}\n' for i in range(3))
        import_judgments(store, "imported", "judgments.csv", judgments.encode())
    return root


@pytest.fixture(scope="module")
def report(hostile_ws):
    from eval_core.report_model import build_report

    return build_report(hostile_ws, seed=3, n_resamples=20)


# ---------------------------------------------------------------- what the browser gets


def _app(root: Path, page: str | None, steps=()):  # noqa: ANN202 - an AppTest
    """Run the app on `root`, switch to `page`, then apply `steps` (callables on the AppTest)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    saved = {k: os.environ.pop(k, None) for k in ("FTLENS_WORKSPACE", "FTLENS_DATABASE_URL", "FTLENS_DEMO_QUICK")}
    os.environ["FTLENS_WORKSPACE"] = str(root)
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
        if page:
            at.switch_page(page).run()
        for step in steps:
            step(at)
            at.run()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert not at.exception, at.exception
    return at


def _walk(node):  # noqa: ANN001, ANN202
    yield node
    for child in (node.children.values() if isinstance(getattr(node, "children", None), dict) else ()):
        yield from _walk(child)


def markdown_surfaces(at) -> list[str]:  # noqa: ANN001
    """Every string of the page that Streamlit interprets as Markdown: bodies of markdown, captions,
    titles and alerts; labels and help of widgets, metrics, expanders and tabs; radio options;
    progress texts; st.table cells, index and headers. (st.code, st.text, st.json, st.dataframe and
    selectbox/multiselect options are literal and left out.)"""
    out: list[str] = []
    for node in _walk(at._tree):
        kind = getattr(node, "type", "")
        if kind in ("code", "text", "json", "dataframe", "arrow_data_frame", "plotly_chart"):
            continue
        if kind == "table":
            frame = node.value.reset_index()
            out += [str(c) for c in frame.columns] + [str(v) for v in frame.to_numpy().ravel()]
            continue
        proto = getattr(node, "proto", None)
        fields = getattr(getattr(proto, "DESCRIPTOR", None), "fields_by_name", {})
        for name in ("body", "label", "help", "text", "placeholder"):
            if name in fields and isinstance(value := getattr(proto, name), str) and value:
                out.append(value)
        if kind == "radio":
            out += [str(o) for o in node.options]
        for sub in ("expandable", "tab"):  # expander and tab blocks carry their label in a sub-message
            if proto is not None and sub in fields and proto.HasField(sub) and getattr(proto, sub).label:
                out.append(getattr(proto, sub).label)
    return out


def _unescaped(md: str, pattern: str) -> list[str]:
    """Matches of `pattern` whose first character is not backslash-escaped (an even run of backslashes before it)."""
    found = []
    for m in re.finditer(pattern, md):
        run = len(md[: m.start()]) - len(md[: m.start()].rstrip("\\"))
        if run % 2 == 0:
            found.append(m.group(0))
    return found


class _Html(HTMLParser):
    """Tags with their attributes, text per innermost tag, and the bodies of script/style elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.stack: list[str] = []
        self.text: list[tuple[str, str]] = []
        self.raw: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, attrs))
        if tag not in ("meta", "br", "hr", "img"):
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag):]

    def handle_data(self, data):  # noqa: ANN001
        where = self.stack[-1] if self.stack else ""
        (self.raw if where in ("script", "style") else self.text).append((where, data))


MD_TAGS = {"p", "br", "strong", "em", "code", "h1", "h2", "h3", "h4", "ul", "ol", "li", "hr", "table", "thead", "tbody",
           "tr", "th", "td"}


def markdown_problems(md: str) -> list[str]:
    """What `md` would do beyond showing text, in a viewer that passes raw HTML (worst case) plus
    Streamlit's extensions: HTML elements, links, images, attributes, `:colour[` directives, LaTeX."""
    from markdown_it import MarkdownIt

    parsed = _Html()
    parsed.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(md))
    problems = [f"<{t} {a}>" for t, a in parsed.tags if t not in MD_TAGS or any(k != "style" for k, _ in a)]
    problems += [f"raw {r}" for _, r in parsed.raw]
    problems += _unescaped(md, r":[A-Za-z-]+\[") + _unescaped(md, r"\$")
    problems += _unescaped(md, r"\*\*b\*\*") + _unescaped(md, r"_b_")  # our names' bold/italic (ours may be bold)
    return problems


def _rendered_text(md: str) -> str:
    from markdown_it import MarkdownIt

    parsed = _Html()
    parsed.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(md))
    return "".join(t for _, t in parsed.text)


PAGES = {  # page -> steps that reach the views holding untrusted text
    "overview": (None, ()),
    "curves": ("pages/training_curves.py", ()),
    "metrics": ("pages/metrics.py", ()),
    "data": ("pages/data.py", ()),
    "rate": ("pages/rating.py", (lambda at: at.selectbox(key="rating_rater_team").set_value(RATERS[0]),)),
    "results_team": ("pages/rating_results.py", (lambda at: at.number_input(key="results_resamples").set_value(50),
                                                 lambda at: at.selectbox(key="results_campaign").set_value("team"))),
    "results_imported": ("pages/rating_results.py", (lambda at: at.number_input(key="results_resamples").set_value(50),
                                                     lambda at: at.selectbox(key="results_campaign").set_value("imported"))),
    "export": ("pages/export.py", (lambda at: at.radio(key="export_format").set_value("md"),
                                   lambda at: at.number_input(key="export_resamples").set_value(50),
                                   lambda at: at.button(key="export_build").click())),
}


@pytest.fixture(scope="module")
def shown(hostile_ws):
    """page name -> its AppTest after the steps of PAGES (each page run once per module)."""
    cache: dict = {}

    def get(name: str):  # noqa: ANN202
        if name not in cache:
            page, steps = PAGES[name]
            cache[name] = _app(hostile_ws, page, steps)
        return cache[name]

    return get


def _assert_inert(at) -> list[str]:  # noqa: ANN001
    surfaces = markdown_surfaces(at)
    bad = {s: p for s in surfaces if (p := markdown_problems(s))}
    assert not bad, f"Markdown surfaces that would render markup: {bad}"
    return surfaces


# ---------------------------------------------------------------- case 13


def _page_13(shown, name: str) -> None:  # noqa: ANN001
    at = shown(name)
    surfaces = _assert_inert(at)
    codes = [c.value for c in at.code]
    if name == "rate":  # prompt and both outputs, byte for byte, in st.code
        with_payload = [c for c in codes if any(p in c for p in PAYLOADS)]
        assert len(with_payload) == 3 and codes[0] in PAYLOADS, codes
        assert [w.label for w in at.text_area][:1] == ["Comment (optional)"]  # the comment is typed in a text area
    elif name == "metrics":  # worst examples: prompt, reference and output of each, byte for byte
        prompts = [c for c in codes if c in PAYLOADS]
        assert len(prompts) >= 3, codes
        assert sum(c.startswith(FORMULAS[0]) for c in codes) >= 1  # stored text, not a defused or escaped copy
    elif name == "data":  # a leaking held-out row and its training row, byte for byte, in st.code
        assert codes[:2] == [f"{PAYLOADS[0]}\n{FORMULAS[0]} {PAYLOADS[0]}"] * 2, codes
    elif name == "export":  # the preview is the Markdown export, escaped
        preview = next(m.value for m in at.markdown if "Representative examples" in m.value)
        text = _rendered_text(preview)
        assert all(p in text for p in PAYLOADS), "every payload shows as text"
    elif name == "results_imported":  # an imported model name only in tables and escaped captions
        assert any("\\<img src=x onerror=alert\\(2\\)\\>" in s for s in surfaces)


def _html_13(report) -> None:  # noqa: ANN001
    from plotly.offline import get_plotlyjs

    from eval_core.report_html import _CSS, to_html

    doc = to_html(report)
    parsed = _Html()
    parsed.feed(doc)
    allowed = {"html": {"lang"}, "head": set(), "meta": {"charset", "http-equiv", "content"}, "title": set(), "style": set(),
               "script": {"type", "charset"}, "body": set(), "h1": set(), "h2": set(), "h3": set(), "p": {"class"}, "b": set(),
               "br": set(), "table": set(), "thead": set(), "tbody": set(), "tr": set(), "th": set(), "td": {"class"},
               "ul": set(), "li": set(), "div": {"id", "class", "style"}}
    for tag, attrs in parsed.tags:
        assert tag in allowed and {k for k, _ in attrs} <= allowed[tag], (tag, attrs)
    scripts = [body for where, body in parsed.raw if where == "script"]
    assert scripts[0] == get_plotlyjs() and len(scripts) > 1  # our inlined plotly.js, then one script per chart
    for body in scripts[1:]:  # chart data is JSON with < written \u003c: nothing can close the element
        assert "<" not in body and "Plotly.newPlot" in body
    assert [body for where, body in parsed.raw if where == "style"] == [_CSS]
    cells = [t for where, t in parsed.text if where == "td"]
    for p in PAYLOADS:
        assert p in cells, f"{p} is not shown as a table cell's text"
    assert any(IMPORTED_MODELS[1] in t for _, t in parsed.text)


def _markdown_13(report) -> None:  # noqa: ANN001
    from eval_core.report_render import to_markdown

    md = to_markdown(report)
    assert markdown_problems(md) == []
    text = _rendered_text(md)
    assert all(p in text for p in PAYLOADS) and IMPORTED_MODELS[1] in text


def _json_13(report, hostile_ws) -> None:  # noqa: ANN001
    from eval_core.report_render import to_json

    d = json.loads(to_json(report))
    assert {e["prompt"] for e in d["examples"] if e["kind"] in ("best", "worst")} == set(PAYLOADS)
    with open_rating_store(hostile_ws) as store:
        rated = json.loads(export_text(store, "team", "json"))
        tuned = [json.loads(line) for line in export_text(store, "team", "jsonl").splitlines()]
    originals = {f"{f} {p}".strip() for f, p in zip(FORMULAS, PAYLOADS, strict=True)}  # the store strips comments
    comments = {r["comment"] for r in rated}
    assert comments <= originals and len(comments) > 3
    corrections = {r["response"] for r in tuned if r["source"] == "correction"}
    assert corrections <= originals and len(corrections) > 3


def _csv_13(report, hostile_ws) -> None:  # noqa: ANN001
    from eval_core.rating_exchange import defuse
    from eval_core.report_render import to_csv_zip

    with open_rating_store(hostile_ws) as store:
        rows = list(csv.DictReader(io.StringIO(export_text(store, "team", "csv"))))
    originals = {f"{f} {p}".strip() for f, p in zip(FORMULAS, PAYLOADS, strict=True)}  # the store strips comments
    assert rows and {r["comment"] for r in rows} <= {defuse(o) for o in originals}  # only the formula guard, no HTML escaping
    with zipfile.ZipFile(io.BytesIO(to_csv_zip(report))) as z:
        examples = list(csv.DictReader(io.StringIO(z.read("examples.csv").decode("utf-8"))))
    assert {e["prompt"] for e in examples if e["kind"] in ("best", "worst")} == set(PAYLOADS)


UNSAFE_CALLS = {"html"}  # st.html, components.v1.html: raw HTML whatever the arguments


def unsafe_html_calls(source: str) -> list[int]:
    """Lines calling with `unsafe_allow_html` not literally False, or st.html/components.html, with a
    non-literal first argument (untrusted text could reach it)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        flag = next((k.value for k in node.keywords if k.arg == "unsafe_allow_html"), None)
        risky = (flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False)) or (
            isinstance(node.func, ast.Attribute) and node.func.attr in UNSAFE_CALLS)
        body = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg in ("body", "html")), None)
        if risky and not (isinstance(body, ast.Constant) and isinstance(body.value, str)):
            lines.append(node.lineno)
    return lines


def _lint_13() -> None:
    sources = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]
    assert len(sources) > 5
    flagged = {p.name: lines for p in sources if (lines := unsafe_html_calls(p.read_text(encoding="utf-8")))}
    assert flagged == {}, f"unsafe_allow_html / st.html with a non-literal argument: {flagged}"
    # The rule itself catches what it is for.
    assert unsafe_html_calls("st.markdown(name, unsafe_allow_html=True)") == [1]
    assert unsafe_html_calls("st.html(f'<b>{name}</b>')") == [1]
    assert unsafe_html_calls("st.markdown('<br>', unsafe_allow_html=True)\nst.markdown(x)") == []


@pytest.mark.parametrize("where", ["rate", "metrics", "data", "export", "results_imported", "html", "markdown", "json", "csv",
                                   "lint"])
def test_case_13_attack_payloads_stay_text(where, request):
    """Script/img/iframe/style tags, javascript: links and remote images in prompts, outputs,
    comments and model names show as literal text on the pages and in HTML/Markdown exports, are
    stored unchanged in JSON/CSV, and no page passes non-literal text to unsafe_allow_html/st.html."""
    if where == "lint":
        _lint_13()
    elif where in PAGES:
        _page_13(request.getfixturevalue("shown"), where)
    elif where == "html":
        _html_13(request.getfixturevalue("report"))
    elif where == "markdown":
        _markdown_13(request.getfixturevalue("report"))
    else:
        {"json": _json_13, "csv": _csv_13}[where](request.getfixturevalue("report"), request.getfixturevalue("hostile_ws"))


# ---------------------------------------------------------------- case 14


def _escaped(name: str) -> str:
    from pages._render import plain

    return plain(name)


NAMES_14 = {  # page -> (untrusted name, how it must reach a Markdown surface)
    "overview": (WS_NAME, RUN_NAME, COLUMN),
    "curves": (),
    "metrics": (CATEGORIES[0],),
    "rate": (RUBRIC, RATERS[0]),
    "results_team": (RATERS[0],),
    "results_imported": (IMPORTED_MODELS[0],),
    "export": (WS_NAME, RUN_NAME, IMPORTED_MODELS[0]),
}


@pytest.mark.parametrize("page", list(NAMES_14))
def test_case_14_names_with_markup_render_literally(page, shown):
    """Workspace, run, dataset column, category, rubric, rater and model names holding :red[x], $$x$$,
    **b** or HTML reach st.title/markdown/caption/alerts, widget labels, radio options, progress
    texts and st.table cells only escaped (pages._render.plain), on every page."""
    at = shown(page)
    surfaces = _assert_inert(at)
    joined = "\n".join(surfaces)
    for name in NAMES_14[page]:
        escaped = _escaped(name) if page != "export" else None
        if page == "export":  # the report escapes with md_text, which also folds line breaks
            from eval_core.report_render import md_text

            escaped = md_text(name)
        assert escaped in joined, f"{name!r} is not shown (escaped) on {page}"
    if page == "overview":
        assert at.title[0].value == _escaped(WS_NAME)
        chart = json.loads(at.get("plotly_chart")[0].proto.spec)  # Plotly draws <b>…: categories as entities
        ticks = {x for trace in chart["data"] for x in trace["x"]}
        assert "cat &lt;i&gt;i&lt;/i&gt; [c](javascript:alert(1))" in ticks and not any(RAW_HTML.search(t) for t in ticks)
    if page == "curves":
        assert RUN_NAME in at.multiselect(key="curves_runs").value  # selectbox/multiselect options are literal text
    if page == "rate":
        assert at.get("progress")[0].proto.text.startswith(_escaped(RATERS[0]) + ":")
    if page == "results_imported":
        chart = json.loads(at.get("plotly_chart")[-1].proto.spec)
        assert chart["layout"]["title"]["text"] == "Ranking in cat :red[x] $$x$$ **b** &lt;b&gt;h&lt;/b&gt;"


# ---------------------------------------------------------------- case 17


@pytest.fixture(scope="module")
def upload_page(hostile_ws, tmp_path_factory):
    """(a copy of the workspace, the Rating results page open on it): every upload variant uses this
    one session, as a user trying several files would."""
    root = tmp_path_factory.mktemp("upload") / "box" / "ws"
    shutil.copytree(hostile_ws, root)
    return root, _app(root, "pages/rating_results.py")


def _upload(at, name: str, data: bytes, campaign: str) -> None:  # noqa: ANN001
    # One run: a form keeps a staged file only until its submit button's run.
    at.text_input(key="import_campaign").set_value(campaign)
    at.file_uploader(key="import_file").set_value((name, data, "text/csv"))
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception


def _zip(stored: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        z.writestr("judgments.csv", "item_id,rater,model_a,model_b,winner\ni1,ann,m1,m2,model_a\n")
    return buf.getvalue()


GOOD_CSV = b"item_id,rater,model_a,model_b,winner\ni1,ann,m1,m2,model_a\ni2,ann,m1,m2,tie\n"
UPLOADS_17 = {  # variant -> (file name, bytes, what the error says; None: accepted)
    "too_large": ("big.csv", GOOD_CSV + b"x" * (MAX_IMPORT_BYTES + 1 - len(GOOD_CSV)), "limited to 50 MB"),
    "zip": ("judgments.csv", _zip(stored=False), "this is a zip archive"),
    "stored_zip_of_a_csv": ("judgments.csv", _zip(stored=True), "this is a zip archive"),
    "gzip": ("judgments.csv", b"\x1f\x8b\x08\x00" + bytes(20), "this is a gzip archive"),
    "pickle": ("judgments.csv", pickle.dumps({"item_id": "i1"}, protocol=5), "this is a Python pickle"),
    "text_pickle_protocol_0": ("judgments.csv", pickle.dumps({"item_id": "i1"}, protocol=0), "the header lacks"),
    "nul_bytes": ("judgments.csv", GOOD_CSV[:20] + b"\x00" + GOOD_CSV[20:], "NUL byte at offset 20"),
    "path_traversal_name": ("../../x.csv", GOOD_CSV, None),
}


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("variant", list(UPLOADS_17))
def test_case_17_judgments_upload_is_sniffed_and_never_saved(variant, upload_page):
    """A judgments upload over the size limit, or a zip/xlsx/gzip/pickle/NUL-byte file named .csv, is
    refused with one error saying what it is and stores nothing; a file named ../../x.csv is parsed
    from memory: its rows are stored with source 'import:x.csv' and no file is written anywhere."""
    root, at = upload_page
    box = root.parent.parent
    name, data, message = UPLOADS_17[variant]
    with open_rating_store(root) as store:
        before_campaigns = [c.name for c in store.campaigns()]
    before = _files(box)
    _upload(at, name, data, campaign=variant)
    new_files = _files(box) - before
    with open_rating_store(root) as store:
        campaigns = [c.name for c in store.campaigns()]
        stored = store.ratings_of(variant) if variant in campaigns else []
    if message is None:
        assert not at.error and "Imported 2 judgments into" in at.success[0].value
        assert {r["source"] for r in stored} == {"import:x.csv"} and len(stored) == 2
    else:
        (err,) = at.error
        assert message in err.value.replace("\\", "") and err.value.startswith(Path(name).name), err.value
        assert campaigns == before_campaigns and stored == []
    # Uploaded bytes never touch the disk: the only files the import may create are the database's.
    assert {p for p in new_files if not re.search(r"\.sqlite(-wal|-shm|-journal)?$", p.name)} == set(), new_files
    for base in (root, REPO, Path.cwd(), root / ".ftlens"):  # where a save under the given name would land
        assert not (base / name).resolve().exists()
    if variant == "too_large":  # the same limit guards the importer's API, whatever the caller
        with pytest.raises(EvalCoreError, match="limited to 50 MB"):
            parse_judgments_csv(data, "big.csv")


# ---------------------------------------------------------------- case 20

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _live_formulas(text: str) -> list[str]:
    """Cells a spreadsheet would run as formulas (numbers such as -0.5 are numbers, not formulas)."""
    live = []
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            if cell.startswith(FORMULA_START):
                try:
                    float(cell)
                except ValueError:
                    live.append(cell)
    return live


def _csv_writer_modules() -> dict[str, bool]:
    """eval_core/pages modules that build csv writers -> whether they call `defuse`."""
    out = {}
    for path in sorted([*(REPO / "eval_core").rglob("*.py"), *(REPO / "pages").glob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree) if isinstance(n, ast.Attribute | ast.Name)}
        if names & {"writer", "DictWriter", "to_csv"} and "csv" in names | {a.name for n in ast.walk(tree)
                                                                           if isinstance(n, ast.Import) for a in n.names}:
            out[path.relative_to(REPO).as_posix()] = "defuse" in names
    return out


def _ratings_csv(hostile_ws, report, tmp_path, capsys) -> dict[str, str]:  # noqa: ANN001
    with open_rating_store(hostile_ws) as store:
        return {"ratings.csv": export_text(store, "team", "csv")}


def _report_csv_zip(hostile_ws, report, tmp_path, capsys) -> dict[str, str]:  # noqa: ANN001
    from eval_core.report_render import to_csv_zip

    with zipfile.ZipFile(io.BytesIO(to_csv_zip(report))) as z:
        return {n: z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".csv")}


def _results_csv(hostile_ws, report, tmp_path, capsys) -> dict[str, str]:  # noqa: ANN001
    from eval_core.cli import main
    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig

    ws = tmp_path / "ws"
    shutil.copytree(hostile_ws, ws)
    shutil.copy(ws / "heldout" / "support.jsonl", ws / "heldout" / "=SUM(1+1).jsonl")  # a set named as a formula
    evaluate_workspace(ws, dataset_names=["=SUM(1+1)"], metric_names=["chrf"], generation_config=GenerationConfig(max_new_tokens=3))
    capsys.readouterr()
    assert main(["results", "--workspace", str(ws), "--format", "csv", "--no-examples"]) == 0
    return {"results.csv": capsys.readouterr().out}


def _curves_csv(hostile_ws, report, tmp_path, capsys) -> dict[str, str]:  # noqa: ANN001
    from eval_core.cli import main

    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": [
        {"step": 1, "epoch": 1.0, "loss": 2.0, "=SUM(1+1)": 0.5}]}))  # a metric logged under a formula's name
    capsys.readouterr()
    assert main(["curves", str(tmp_path), "--format", "csv", "--run", "@run"]) == 0
    return {"curves.csv": capsys.readouterr().out}


CSV_EXPORTS = {"ratings_csv": (_ratings_csv, "=HYPERLINK"), "report_csv_zip": (_report_csv_zip, "=HYPERLINK"),
               "results_csv": (_results_csv, "=SUM(1+1)"), "curves_csv": (_curves_csv, "=SUM(1+1)")}
@pytest.mark.parametrize("export", ["ratings_csv", "report_csv_zip", "results_csv", "curves_csv", "every_csv_writer"])
def test_case_20_csv_cells_never_start_a_formula(export, hostile_ws, report, tmp_path, capsys):
    """Comments, corrections, references, outputs and names starting with = + - @ tab or CR get a
    leading apostrophe in the ratings CSV, every CSV of the report zip, and the CLI's results and
    curves CSVs; every module that writes CSV calls records.defuse."""
    if export == "every_csv_writer":
        writers = _csv_writer_modules()
        assert {"eval_core/rating_exchange.py", "eval_core/report_render.py"} <= set(writers)
        assert all(writers.values()), writers
        return
    make, formula = CSV_EXPORTS[export]
    texts = make(hostile_ws, report, tmp_path, capsys)
    assert formula in "\n".join(texts.values()), "no formula reached the file: the test would prove nothing"
    live = {name: cells for name, text in texts.items() if (cells := _live_formulas(text))}
    assert live == {}, live


def test_case_14_every_figure_builder_shows_names_literally():
    """Plotly draws <b>, <a href> and <span style> in labels: every eval_core figure builder returns
    through `literal_figure`, which escapes names in traces, categories, texts, titles and notes."""
    import plotly.graph_objects as go

    from eval_core.figure_text import literal_figure

    hostile = '<a href="https://evil.example">run</a> & <b>x</b>'
    shown = "&lt;a href=\"https://evil.example\"&gt;run&lt;/a&gt; &amp; &lt;b&gt;x&lt;/b&gt;"
    fig = go.Figure(go.Bar(x=[hostile, "ok"], y=[1, 2], name=hostile, text=[hostile, "ok"], customdata=[[hostile], ["ok"]],
                           hovertemplate="%{x}<br>%{y}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[1, 2], y=[3, 4], name="plain"))
    fig.update_layout(title={"text": hostile}, xaxis={"title": {"text": hostile}}, yaxis2={"title": {"text": hostile}})
    fig.add_annotation(x=1, y=1, text=hostile)
    out = json.loads(literal_figure(fig).to_json())
    bar, line = out["data"]
    assert bar["x"] == [shown, "ok"] and bar["name"] == bar["text"][0] == bar["customdata"][0][0] == shown
    assert bar["hovertemplate"] == "%{x}<br>%{y}<extra></extra>"  # our own markup stays
    assert line["x"] == [1, 2] and line["name"] == "plain"  # numbers and plain names untouched
    layout = out["layout"]
    assert layout["title"]["text"] == layout["xaxis"]["title"]["text"] == layout["yaxis2"]["title"]["text"] == shown
    assert layout["annotations"][0]["text"] == shown
    # Every figure builder returns through it.
    for path in sorted((REPO / "eval_core").glob("*_figures.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_figure") and not node.name.startswith("_"):
                returns = [r for r in ast.walk(node) if isinstance(r, ast.Return)]
                assert returns and all(isinstance(r.value, ast.Call) and getattr(r.value.func, "id", "") == "literal_figure"
                                       for r in returns), f"{path.name}:{node.name}"
