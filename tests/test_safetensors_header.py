"""The safetensors header reader refuses every malformed or hostile header with a named error."""

from __future__ import annotations

import json
import struct

import pytest

from eval_core.errors import CheckpointError
from eval_core.safetensors_header import read_safetensors_header


def write(path, header: dict, buffer: bytes = b"", declared_len: int | None = None) -> None:
    raw = json.dumps(header).encode()
    n = len(raw) if declared_len is None else declared_len
    path.write_bytes(struct.pack("<Q", n) + raw + buffer)


def test_real_file_from_the_safetensors_library(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)}, str(path), metadata={"format": "pt"})
    header = read_safetensors_header(path)
    assert header.parameter_count == 17
    assert header.tensors["b"] == ("BF16", (5,))
    assert header.metadata == {"format": "pt"}


@pytest.mark.parametrize(
    ("header", "buffer", "declared", "needle"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10**9, "header claims"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 2**63, "header claims"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8, None, "outside"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-4, 4]}}, b"\0" * 8, None, "outside"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, None, "overlaps"),
        ({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "bad shape"),
        ({"a": [1, 2]}, b"", None, "not an object"),
    ],
    ids=["len-past-eof", "len-2^63", "offset-past-buffer", "negative-offset", "shape-mismatch",
         "overlap", "unknown-dtype", "negative-dim", "entry-not-object"],
)
def test_hostile_headers_are_refused(tmp_path, header, buffer, declared, needle):
    path = tmp_path / "bad.safetensors"
    write(path, header, buffer, declared)
    with pytest.raises(CheckpointError, match=needle) as err:
        read_safetensors_header(path)
    assert str(path) in str(err.value)


def test_truncated_and_non_json(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="shorter"):
        read_safetensors_header(short)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_safetensors_header(garbage)
