"""Rating results page, one test per behaviour in pages/rating_results.py's docstring.

The workspace is a copy of the session's quick demo (campaign "demo": checkpoint-6, checkpoint-24,
checkpoint-36; alice and bob rate every item of it here, deterministically).
"""

from __future__ import annotations

import json
import shutil

import pytest

from eval_core.rating_setup import campaign_summary, open_rating_store

PAGE = "pages/rating_results.py"


def rate_everything(ws, verdict_of) -> None:  # noqa: ANN001
    store = open_rating_store(ws)
    try:
        for rater in ("alice", "bob"):
            while (item := store.next_item("demo", rater)) is not None:
                store.submit("demo", item.token, rater, verdict_of(rater, item), {"left": {"helpfulness": 3}})
    finally:
        store.close()


@pytest.fixture(scope="module")
def rated(quick_demo, tmp_path_factory):
    """The demo campaign rated by both raters: the longer output wins, else a tie."""
    ws = tmp_path_factory.mktemp("rated") / "ws"
    shutil.copytree(quick_demo, ws)

    def verdict(rater, item):  # noqa: ANN001
        a, b = len(item.left_text), len(item.right_text)
        return "left" if a > b else "right" if b > a else "tie"

    rate_everything(ws, verdict)
    return ws


def open_page(app, monkeypatch, workspace, resamples: int = 50):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app(120).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    if any(n.key == "results_resamples" for n in at.number_input):  # a campaign is shown: fewer resamples, faster
        at.number_input(key="results_resamples").set_value(resamples).run()
        assert not at.exception, at.exception
    return at


def test_without_campaigns_offers_to_create_one(app, monkeypatch, evaluated_demo, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    at = open_page(app, monkeypatch, ws)
    assert at.title[0].value == "Rating results"
    at.text_input(key="new_campaign_name").input("team-1")
    at.multiselect(key="new_campaign_models").select("base").select("checkpoint-36")
    at.text_input(key="new_campaign_raters").input("ann, ben")
    at.button[0].click().run()  # the form's "Create campaign"
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Campaign 'team-1' created: 61 items, 2 raters." in at.success[0].value.replace("\\", "")
    store = open_rating_store(ws)
    try:
        spec = store.campaign("team-1")
    finally:
        store.close()
    assert spec.models == ("base", "checkpoint-36") and spec.raters == ("ann", "ben") and spec.overlap == 2


def test_ranking_with_intervals_equals_the_cli_numbers(app, monkeypatch, rated):
    at = open_page(app, monkeypatch, rated)
    summary = campaign_summary(rated, "demo", seed=12345, n_resamples=50)
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == [s.model for s in summary.bradley_terry.strengths]
    assert list(table["Elo"]) == [round(s.elo) for s in summary.bradley_terry.strengths]
    assert list(table["Elo 95% CI"]) == [f"[{s.elo_low:.0f}, {s.elo_high:.0f}]" for s in summary.bradley_terry.strengths]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert charts[0]["data"][0]["y"] == [s.model for s in reversed(summary.bradley_terry.strengths)]
    assert "Win rate of row vs column" in charts[1]["layout"]["title"]["text"]
    assert "48 judgments" in at.caption[0].value


def test_ties_dropped_refits(app, monkeypatch, rated):
    at = open_page(app, monkeypatch, rated)
    at.radio(key="results_ties").set_value("drop").run()
    summary = campaign_summary(rated, "demo", seed=12345, n_resamples=50)
    assert list(at.dataframe[0].value["Elo"]) == [round(s.elo) for s in summary.bradley_terry_ties_dropped.strengths]


def test_agreement_position_bias_and_progress(app, monkeypatch, quick_demo, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws)
    rate_everything(ws, lambda rater, item: "left")  # raters who always pick the left output
    at = open_page(app, monkeypatch, ws)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Left (A) wins"] == "100.0%"
    assert "Position bias: raters chose the left output in 100.0%" in at.warning[0].value.replace("\\", "")
    kappa = at.dataframe[1].value  # ranking, kappa, rubric scores, progress
    assert list(kappa[["rater 1", "rater 2"]].iloc[0]) == ["alice", "bob"] and kappa["shared items"].iloc[0] == 24
    progress = at.dataframe[-1].value
    assert list(progress["rated"]) == [24, 24] and list(progress["assigned"]) == [24, 24]
    summary = campaign_summary(ws, "demo", seed=12345, n_resamples=50)
    assert metrics["Fleiss' kappa"] == ("-" if summary.fleiss_kappa is None else f"{summary.fleiss_kappa:.3f}")


def test_exports_are_offered(app, monkeypatch, rated):
    at = open_page(app, monkeypatch, rated)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:3] == ["Ratings (CSV)", "Ratings (JSON)", "Summary (JSON)"]
    assert labels[3].startswith("Fine-tuning data (JSONL, ")


def test_disconnected_comparisons_are_warned_about(app, monkeypatch, evaluated_demo, tmp_path):
    from eval_core.rating_exchange import import_judgments

    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    csv = tmp_path / "two_groups.csv"
    csv.write_text("item_id,rater,model_a,model_b,winner\n" + "".join(
        f"i{i},ann,{a},{b},{w}\n" for i, (a, b, w) in enumerate([("m1", "m2", "model_a"), ("m1", "m2", "model_b"),
                                                                 ("m3", "m4", "model_a"), ("m3", "m4", "tie")])))
    with open_rating_store(ws) as store:
        import_judgments(store, "imported", csv)
    at = open_page(app, monkeypatch, ws)
    assert "never compared with the others" in at.warning[0].value
