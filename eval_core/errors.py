"""The error hierarchy of eval_core.

Every error a user can cause (a bad workspace, a broken dataset, an unsafe checkpoint) is an
`EvalCoreError`. Its message says what was wrong, where (file, line, field) and what to do, so the
CLI and every page can render it once, as it is, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EvalCoreError(Exception):
    """Base class of every error eval_core raises on purpose.

    Args:
        message: what was wrong and what to do about it.
        path: the file or folder at fault, when there is one.
        line: 1-based line number inside `path`, when known.
        field: the config key, column or JSON field at fault, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    @property
    def location(self) -> str:
        """`file:line (field 'x')`, or an empty string when nothing is known."""
        parts = []
        if self.path:
            parts.append(self.path if self.line is None else f"{self.path}:{self.line}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: {self.message}" if loc else self.message


class WorkspaceError(EvalCoreError):
    """The workspace folder or its config file is missing or malformed."""


class DatasetError(EvalCoreError):
    """A held-out set cannot be read: bad encoding, bad JSON, a missing column."""


class CheckpointError(EvalCoreError):
    """A checkpoint folder is incomplete or malformed (missing weights, bad config, bad header)."""


class UnsafeCheckpointError(CheckpointError):
    """Loading this checkpoint could run code (pickle weights, remote code); it was refused."""
