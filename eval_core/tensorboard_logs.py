"""TensorBoard event files read into `CurvePoint`s with the `tensorboard` package's own loader.

HF's tag names (`train/loss`, `eval/support_loss`) are mapped back to the trainer_state names
(`loss`, `eval_support_loss`) so the two sources merge. A damaged file (a truncated last record
from a live run, a bad checksum, a file that is not an event file at all) gives the points read
before the damage and a warning; reading stops at the caps of `eval_core.data_files`, so memory
stays bounded whatever the file's size.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from eval_core import data_files
from eval_core.data_files import human_bytes
from eval_core.records import NOT_METRICS, CurvePoint


def _tb_metric(tag: str) -> str:
    """HF's TensorBoardCallback writes `train/x` and `eval/x`; map back to `x` and `eval_x`."""
    if tag.startswith("train/"):
        return tag[len("train/"):]
    if tag.startswith("eval/"):
        return "eval_" + tag[len("eval/"):]
    return tag


def read_tensorboard(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
    """Scalar points of one event file, read with tensorboard's own loader, and warnings.

    A truncated or corrupt file, or one that is not an event file, yields the points read before
    the damage and a warning; so does a file over `MAX_EVENT_FILE_BYTES` (only its start is read)
    or with more than `MAX_LOG_POINTS` scalars.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    source = source or path.name
    points: list[CurvePoint] = []
    warnings: list[str] = []
    epochs: dict[int, float] = {}
    size = path.stat().st_size
    cap = data_files.MAX_EVENT_FILE_BYTES
    if size > cap:
        warnings.append(f"{path}: the file is {human_bytes(size)}; only its first {human_bytes(cap)} are read "
                        "(the cap for event files: their records are checked in pure Python). Large event "
                        "files hold images or histograms; log scalars to their own file to see them all")
    # Framing first: the loader is only asked for the records known to be whole, so it never
    # reads a damaged length or a record past the cap.
    complete, damage = _record_framing(path, size, min(size, cap))
    events, failure, loader = 0, None, None
    try:
        loader = EventFileLoader(str(path)).Load() if complete else iter(())
        for event in loader:
            events += 1
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    value = float(v.simple_value)
                elif kind == "tensor" and v.metadata.plugin_data.plugin_name == "scalars":
                    arr = tensor_util.make_ndarray(v.tensor)
                    if arr.size != 1:
                        continue
                    value = float(arr.reshape(()))
                else:
                    continue
                metric = _tb_metric(v.tag)
                if metric == "epoch":
                    epochs[int(event.step)] = value
                    continue
                if metric in NOT_METRICS:
                    continue
                points.append(CurvePoint(run, source, int(event.step), None, float(event.wall_time), metric, value))
            if events >= complete or len(points) >= data_files.MAX_LOG_POINTS:
                break
    except Exception as exc:  # the loader raises DataLossError and friends on damaged records
        failure = f"{type(exc).__name__}: {exc}. The file is truncated or corrupt"
    finally:
        getattr(loader, "close", lambda: None)()  # the loader is a generator holding the file open
    if len(points) >= data_files.MAX_LOG_POINTS:
        warnings.append(f"{path}: stopped at {len(points):,} points, the cap for one log file; the rest is not shown")
    elif failure or events < complete:
        # The loader stops quietly at a bad payload checksum (it expects more data from a live run).
        warnings.append(f"{path}: record {events + 1} is corrupt ({failure or 'bad checksum'}); the "
                        f"{len(points)} points before it are shown")
    elif damage:
        warnings.append(f"{path}: {damage}; the {len(points)} points before it are shown")
    if size > 0 and not points and not warnings:
        warnings.append(f"{path}: no scalar values found")
    return [replace(p, epoch=epochs.get(p.step)) for p in points], warnings


def _record_framing(path: Path, size: int, limit: int) -> tuple[int, str | None]:
    """(sound TFRecord frames within the first `limit` of `size` bytes, what stopped the count or None).

    A frame is an 8-byte little-endian length, its 4-byte masked CRC-32C, the payload and a 4-byte
    payload CRC; the payload (the Event protobuf) and its CRC are left to tensorboard's loader.
    Reads 12 bytes per record, so memory stays bounded whatever the file holds.
    """
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    count = pos = 0
    with path.open("rb") as f:
        while pos < limit:
            header = f.read(12)
            if len(header) < 12:
                return count, "the last record is incomplete (the file is truncated or still being written)"
            if masked_crc32c(header[:8]) != int.from_bytes(header[8:], "little"):
                what = "corrupt (bad checksum)" if count else "not a record: this is not a TensorBoard event file"
                return count, f"record {count + 1} is {what}"
            end = pos + 12 + int.from_bytes(header[:8], "little") + 4
            if end - pos - 16 > data_files.MAX_EVENT_RECORD_BYTES:
                return count, (f"record {count + 1} claims {human_bytes(end - pos - 16)}, over the "
                               f"{human_bytes(data_files.MAX_EVENT_RECORD_BYTES)} limit for one record")
            if end > size:
                return count, "the last record is incomplete (the file is truncated or still being written)"
            if end > limit:
                break  # past the cap, which the caller warns about
            pos = end
            f.seek(pos)
            count += 1
    return count, None
