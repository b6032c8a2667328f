"""AppTest fixtures: a clean environment and empty Streamlit caches for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(autouse=True)
def clean_app_state(monkeypatch, tmp_path):
    import streamlit as st

    for var in ("FTLENS_WORKSPACE", "FTLENS_DEMO_QUICK"):
        monkeypatch.delenv(var, raising=False)
    # Never let a test touch the developer's real demo folder.
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo_here"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app():
    """A fresh AppTest of the whole app (entry script + navigation)."""
    from streamlit.testing.v1 import AppTest

    def start(timeout: float = 60):
        return AppTest.from_file(APP, default_timeout=timeout)

    return start
