"""Fuzz pass (hypothesis) over the readers of untrusted files: any bytes give parsed rows or our own
error type (EvalCoreError, naming the file), never an unhandled exception. Plus the Streamlit
server settings the app relies on."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval_core.errors import EvalCoreError
from eval_core.heldout_sets import read_heldout_set
from eval_core.rating_exchange import MAX_IMPORT_BYTES, parse_judgments_csv
from eval_core.training_logs import read_lightning_csv, read_plain_log, read_trainer_state

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Bytes that look like the formats half of the time, so the parsers get past their first check.
json_lines = st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["id", "prompt", "reference", "text", "category", "answer", "choices", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                              st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=4)), max_size=5),
    st.text(max_size=30)), max_size=6).map(lambda rows: "\n".join(json.dumps(r) if not isinstance(r, str) else r
                                                                   for r in rows).encode())
raw = st.one_of(st.binary(max_size=300), json_lines,
                st.text(max_size=200).map(lambda t: ("step,loss,epoch\n" + t).encode("utf-8", "surrogatepass")))


def _survives(call) -> None:  # noqa: ANN001
    try:
        call()
    except EvalCoreError as exc:
        assert exc.message  # our error: it says what is wrong


@FUZZ
@given(data=raw, kind=st.sampled_from(["generation", "text", "probe"]), ext=st.sampled_from([".jsonl", ".csv"]))
def test_heldout_set_reader(tmp_path_factory, data, kind, ext):
    path = tmp_path_factory.mktemp("fuzz") / f"set{ext}"
    path.write_bytes(data)
    _survives(lambda: read_heldout_set(path, kind=kind))


@FUZZ
@given(data=st.one_of(raw, st.dictionaries(st.sampled_from(["log_history", "global_step", "best_metric"]),
                                           st.one_of(st.lists(st.dictionaries(st.sampled_from(["step", "loss", "eval_loss", "epoch"]),
                                                                              st.one_of(st.none(), st.floats(), st.text(max_size=4),
                                                                                        st.integers())), max_size=4),
                                                     st.integers(), st.text(max_size=5))).map(lambda d: json.dumps(d).encode())))
def test_trainer_state_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "trainer_state.json"
    path.write_bytes(data)
    _survives(lambda: read_trainer_state(path, "run"))


@FUZZ
@given(data=raw)
def test_lightning_csv_and_plain_log_readers(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "metrics.csv").write_bytes(data)
    (folder / "log.jsonl").write_bytes(data)
    _survives(lambda: read_lightning_csv(folder / "metrics.csv", "run"))
    _survives(lambda: read_plain_log(folder / "log.jsonl", "run"))


@FUZZ
@given(data=st.one_of(raw, st.text(max_size=200).map(lambda t: ("item_id,rater,model_a,model_b,winner\n" + t).encode(
    "utf-8", "surrogatepass"))))
def test_judgments_csv_reader(data):
    _survives(lambda: parse_judgments_csv(data, "judgments.csv"))


def test_streamlit_server_settings():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["maxUploadSize"] * 1_000_000 == MAX_IMPORT_BYTES  # MB, as Streamlit counts
    assert config["browser"]["gatherUsageStats"] is False


def test_a_log_with_bad_bytes_names_file_and_line(tmp_path):
    import pytest

    path = tmp_path / "trainer_state.json"
    path.write_bytes(b'{"log_history": [],\n "x": "caf\xe9"}\n')
    with pytest.raises(EvalCoreError) as err:
        read_trainer_state(path, "run")
    assert (err.value.path, err.value.line) == (str(path), 2) and "not UTF-8" in err.value.message


def _mutated(seed_bytes: bytes, data) -> bytes:  # noqa: ANN001 - hypothesis's data object
    """A valid file with some bytes changed and maybe cut short: damage the parsers can get past."""
    out = bytearray(seed_bytes)
    for _ in range(data.draw(st.integers(0, 6))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    return bytes(out[: data.draw(st.integers(0, len(out)))])


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_tensorboard_reader(tmp_path_factory, data):
    """Damaged event files (bytes changed, cut short) give points, warnings or our error."""
    from eval_core.tensorboard_logs import read_tensorboard
    from tests.reliability.test_reliability_inputs import event_file

    folder = tmp_path_factory.mktemp("fuzz")
    good = event_file(folder / "good", steps=6).read_bytes()
    path = folder / "events.out.tfevents.1.host"
    path.write_bytes(_mutated(good, data))
    _survives(lambda: read_tensorboard(path, "run"))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["generation", "text"]))
def test_parquet_reader(tmp_path_factory, data, kind):
    """Damaged Parquet files give rows or our error, never pyarrow's own exception."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("fuzz")
    pq.write_table(pa.Table.from_pylist([{"prompt": f"p{i}", "reference": f"r{i}", "text": f"t{i}"} for i in range(5)]),
                   folder / "good.parquet")
    path = folder / "set.parquet"
    path.write_bytes(_mutated((folder / "good.parquet").read_bytes(), data))
    _survives(lambda: read_heldout_set(path, kind=kind))
