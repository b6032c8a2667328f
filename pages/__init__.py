"""Streamlit pages (thin: they read eval_core and draw). Files starting with _ are helpers."""
