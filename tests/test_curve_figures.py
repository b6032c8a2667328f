"""The curves figure: raw under smoothed, markers on the right x, score overlays on a second axis."""

from __future__ import annotations

from eval_core.curve_analysis import summarize_metric
from eval_core.curve_figures import ScoreOverlay, training_curves_figure
from eval_core.training_logs import CurvePoint, CurveTable


def table() -> CurveTable:
    pts = []
    for step in range(1, 11):
        pts.append(CurvePoint("r", "s", step, step / 10, 1_700_000_000.0 + step, "loss", 3.0 - 0.2 * step))
    for step, v in [(2, 2.8), (4, 2.5), (6, 2.6), (8, 2.7), (10, 2.9)]:
        pts.append(CurvePoint("r", "s", step, step / 10, 1_700_000_000.0 + step, "eval_loss", v))
    return CurveTable(points=tuple(pts))


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_markers_and_overlay():
    t = table()
    s = summarize_metric(t, "r", "eval_loss", patience=2)
    assert (s.best_step, s.overfit_onset_step) == (4, 6)
    fig = training_curves_figure(
        t, ["r"], ["loss", "eval_loss"], summaries=[s], checkpoint_steps={"r": [5, 10]},
        overlays=[ScoreOverlay("BLEU", "r", (5, 10), (20.0, 18.5), unit="BLEU")], smoothing=0.0,
    )
    assert list(trace(fig, "best eval_loss").x) == [4] and list(trace(fig, "best eval_loss").y) == [2.5]
    assert list(trace(fig, "checkpoint saved").x) == [5, 10]
    assert trace(fig, "BLEU (r)").yaxis == "y2" and fig.layout.yaxis2.title.text == "BLEU"
    assert [a.text for a in fig.layout.annotations] == ["eval_loss: overfitting from step 6"]
    assert fig.layout.shapes[0].x0 == 6


def test_epoch_axis_places_markers_at_the_epoch_of_their_step():
    t = table()
    s = summarize_metric(t, "r", "eval_loss", patience=2)
    fig = training_curves_figure(t, ["r"], ["eval_loss"], summaries=[s], x_axis="epoch")
    assert list(trace(fig, "best eval_loss").x) == [0.4]
    assert fig.layout.xaxis.title.text == "epoch"
