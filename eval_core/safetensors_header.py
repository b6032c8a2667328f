"""Read and validate a safetensors header without torch and without trusting the file.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping tensor names to
{dtype, shape, data_offsets}, then the raw buffer. We read only the header, check every offset
against the file size and the dtype x shape, and refuse overlaps (the safetensors attack notes list
each of these as a crash or DoS vector). Discovery uses this to count parameters in milliseconds,
before any loader touches the file.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from eval_core.errors import CheckpointError

# The reference implementation caps headers at 100 MB; real headers are a few hundred KB.
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES: dict[str, float] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a validated header says: tensor shapes and the file's metadata block."""

    path: Path
    tensors: dict[str, tuple[str, tuple[int, ...]]]
    metadata: dict[str, str]

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors.values())


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of `path`.

    Raises:
        CheckpointError: naming the file and the tensor at fault, for a truncated file, an
            oversized or malformed header, an unknown dtype, or offsets that are out of the file,
            do not match dtype x shape, or overlap.

    Example:
        >>> read_safetensors_header(Path("ckpt/model.safetensors")).parameter_count  # doctest: +SKIP
        1478912
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    "file is shorter than a safetensors header (8 bytes); it is truncated or not "
                    "safetensors. Re-save the checkpoint with save_pretrained.",
                    path=path,
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise CheckpointError(
                    f"safetensors header claims {n} bytes but the file has {size} bytes "
                    f"(limit {MAX_HEADER_BYTES}); the file is truncated or crafted.",
                    path=path,
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"safetensors header is not valid JSON: {exc}", path=path) from exc
    except RecursionError as exc:  # json recurses per nesting level; a crafted header nests deeply
        raise CheckpointError("safetensors header nests too deeply to be a header; the file is crafted", path=path) from exc
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object", path=path)

    buffer_size = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError("'__metadata__' is not an object", path=path, field="__metadata__")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise CheckpointError("tensor entry is not an object", path=path, field=name)
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(f"unknown dtype {dtype!r}", path=path, field=name)
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise CheckpointError(f"bad shape {shape!r}", path=path, field=name)
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= buffer_size
        ):
            raise CheckpointError(
                f"data_offsets {offsets!r} fall outside the {buffer_size}-byte data buffer",
                path=path,
                field=name,
            )
        expected = math.prod(shape) * DTYPE_BYTES[dtype]
        if offsets[1] - offsets[0] != expected:
            raise CheckpointError(
                f"data_offsets span {offsets[1] - offsets[0]} bytes but {dtype}{shape} needs "
                f"{expected:g}",
                path=path,
                field=name,
            )
        tensors[name] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise CheckpointError(f"tensor data overlaps tensor {a!r}", path=path, field=b)
    return SafetensorsHeader(path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()})
