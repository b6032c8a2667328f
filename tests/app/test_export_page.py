"""Export page, one test per behaviour in pages/export.py's docstring."""

from __future__ import annotations

import shutil

import pytest

PAGE = "pages/export.py"


@pytest.fixture(scope="module")
def ws(probed_demo, tmp_path_factory):
    dst = tmp_path_factory.mktemp("export") / "ws"
    shutil.copytree(probed_demo, dst)
    return dst


def open_page(app, monkeypatch, workspace):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app(180).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_builds_markdown_with_preview_and_download(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.multiselect(key="export_sections").set_value(["summary", "metrics"])
    at.radio(key="export_format").set_value("md")
    at.number_input(key="export_resamples").set_value(50)
    at.button(key="export_build").click().run()
    assert not at.exception and not at.error
    (button,) = at.get("download_button")
    assert button.proto.label == "Download Markdown"
    preview = next(m.value for m in at.markdown if m.value.startswith("# Evaluation report: "))
    assert "## Metrics (whole sets)" in preview and "## Forgetting" not in preview


def test_builds_self_contained_html(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.radio(key="export_format").set_value("html")
    at.number_input(key="export_resamples").set_value(50)
    at.button(key="export_build").click().run()
    assert not at.exception and not at.error
    assert at.get("download_button")[0].proto.label == "Download HTML (self-contained)"


def test_no_sections_no_build(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.multiselect(key="export_sections").set_value([]).run()
    assert at.button(key="export_build").disabled
