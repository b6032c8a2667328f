"""The workspace config file, `ftlens.toml`: typed, validated, with errors that name the field.

```toml
schema_version = 1
name = "Support bot fine-tune"
base_model = "base_model"              # folder, relative to the workspace

[[runs]]
name = "support-ft"
path = "runs/support-ft"               # a Trainer output_dir with checkpoint-*/

[[datasets]]
name = "support_test"
path = "heldout/support_test.jsonl"
kind = "generation"                    # generation | text | probe
columns = { prompt = "question", reference = "answer", category = "topic" }

[database]
url = "sqlite:///.ftlens/results.sqlite"   # later: the results store
```

Every key is optional: what is missing is discovered (see `workspace.py`). Unknown keys are
errors with a "did you mean" hint, because a typo silently ignored is a wrong evaluation.
Paths must stay inside the workspace.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from eval_core.errors import WorkspaceError
from eval_core.heldout_sets import REQUIRED_ROLES, ROLE_ALIASES
from eval_core.team_config import TeamConfig, parse_team

CONFIG_FILE_NAME = "ftlens.toml"
CONFIG_SCHEMA_VERSION = 1

_TOP_KEYS = ("schema_version", "name", "base_model", "runs", "datasets", "training_sets", "database", "team")
_RUN_KEYS = ("name", "path")
_DATASET_KEYS = ("name", "path", "kind", "columns")


@dataclass(frozen=True)
class RunSpec:
    """A run named in the config."""

    name: str
    path: str


@dataclass(frozen=True)
class DatasetSpec:
    """A held-out set named in the config; `kind` None means infer from columns."""

    name: str
    path: str
    kind: str | None = None
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def column_map(self) -> dict[str, str]:
        return dict(self.columns)


@dataclass(frozen=True)
class WorkspaceConfig:
    """A parsed `ftlens.toml`. None / empty means "discover it"."""

    source: Path | None = None
    name: str | None = None
    base_model: str | None = None
    runs: tuple[RunSpec, ...] | None = None
    datasets: tuple[DatasetSpec, ...] | None = None
    # What the model was fine-tuned on, for the data diagnostics (contamination of the held-out sets).
    training_sets: tuple[DatasetSpec, ...] | None = None
    database_url: str | None = None
    team: TeamConfig | None = None  # a [team] table: served in team mode (eval_core.team_config)


def _hint(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" Did you mean '{close[0]}'?" if close else f" Allowed keys: {', '.join(allowed)}."


_TABLE_HEADER = re.compile(r"\s*\[\[?\s*([\w.\-]+)\s*\]\]?\s*(#.*)?$")


def _line_of(text: str, needle: str, field: str = "") -> int | None:
    """The 1-based line showing `needle`, looked for first inside the table `field` belongs to.

    `runs[1].name` is looked for in the second `[[runs]]` table (and its sub-tables),
    `database.url` in `[database]`, a top-level key above the first table; when the table has no
    such line (a missing key), its header line is given. Comment lines are skipped.
    """
    lines = text.split("\n")
    headers = [(n, m.group(1)) for n, line in enumerate(lines) if (m := _TABLE_HEADER.match(line))]

    def search(lo: int, hi: int) -> int | None:
        for n in range(lo, hi):
            if needle in lines[n] and not lines[n].lstrip().startswith("#"):
                return n + 1
        return None

    m = re.match(r"(\w+)(?:\[(\d+)\])?\.", field)
    if m:
        table, index = m.group(1), int(m.group(2) or 0)
        own = [n for n, name in headers if name == table]
        if index < len(own):
            start = own[index]
            end = next(
                (n for n, name in headers if n > start and not name.startswith(table + ".")), len(lines)
            )
            return search(start + 1, end) or start + 1
    else:
        found = search(0, headers[0][0] if headers else len(lines))
        if found:
            return found
    return search(0, len(lines))


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, message: str, field: str, needle: str | None = None) -> WorkspaceError:
        return WorkspaceError(
            message,
            path=self.path,
            field=field,
            line=_line_of(self.text, needle or field.split(".")[-1].split("[")[0], field),
        )

    def keys(self, table: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown key '{key}'.{_hint(key, allowed)}", f"{where}{key}", key)

    def string(self, table: dict, key: str, where: str, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise self.fail(f"'{key}' is required", f"{where}{key}")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{key}' must be a non-empty string, got {value!r}", f"{where}{key}", key)
        return value

    def path_inside(self, value: str, field: str) -> str:
        """`value` as a relative POSIX path, refused when it could name anything outside the workspace.

        Purely lexical: nothing is resolved, opened or fetched here, so the error is the same
        whether or not the named file exists (symlinks are checked where the file is used).
        """
        reason = unsafe_path_reason(value)
        if reason:
            raise self.fail(
                f"path {value!r} {reason}; give a path relative to the workspace folder, with '/' "
                "and without '..'",
                field,
                # An escaped value (a backslash, a NUL) is not in the text as written: find the key.
                value if value in self.text else None,
            )
        return Path(value).as_posix()


# `file:`, `http://169.254.169.254/`: a path is never fetched, so a URL is a mistake or an attack.
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")
# Percent-encoded '.', '/', '\\' or NUL: paths are never URL-decoded, so these only hide a '..'.
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


def unsafe_path_reason(value: str) -> str | None:
    """Why `value` may not name a file of the workspace, or None when it may.

    Refused: control characters (NUL), URLs, '~' (a home folder), backslashes and drive letters
    (Windows UNC `\\\\host\\share`, device `\\\\.\\pipe`, extended `\\\\?\\C:` paths), percent-encoding,
    absolute paths (`/etc`, `//proc/self/root`) and any '..' part, wherever a '#' or '?' puts it.

    Example:
        >>> unsafe_path_reason("runs/a") is None, unsafe_path_reason("../x")
        (True, "leaves the workspace ('..')")
    """
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "contains a control character (such as NUL)"
    if URL_PATTERN.match(value):
        return "is a URL; only files inside the workspace are read, nothing is downloaded"
    if value.startswith("~"):
        return "starts with '~' (a home folder), which is outside the workspace"
    if "\\" in value or PureWindowsPath(value).drive:
        return "is a Windows path (a backslash or drive letter; UNC and device paths are refused)"
    if _ENCODED.search(value):
        return "is percent-encoded; paths are used as written, never decoded"
    p = Path(value)
    if p.is_absolute():
        return "is absolute, so it leaves the workspace"
    if ".." in p.parts:
        return "leaves the workspace ('..')"
    return None


def parse_workspace_config(path: Path) -> WorkspaceConfig:
    """Parse and validate `path` (an `ftlens.toml`).

    Raises:
        WorkspaceError: naming the file, line and field for TOML syntax errors, unknown keys,
            wrong types, duplicate names and paths that leave the workspace.

    Example:
        >>> parse_workspace_config(Path("demo/ftlens.toml")).base_model  # doctest: +SKIP
        'base_model'
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"cannot read the config: {exc}", path=path) from exc
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        # "(at end of document)": an unclosed string, array or table; point at the last line.
        line = int(m.group(1)) if m else len(text.rstrip().split("\n"))
        raise WorkspaceError(f"not valid TOML: {exc}", path=path, line=line) from exc
    c = _Checker(path, text)
    c.keys(data, _TOP_KEYS, "")
    version = data.get("schema_version", CONFIG_SCHEMA_VERSION)
    # bool is an int and 1.0 == 1: check the type, or `true` and `1.0` would pass as version 1.
    if type(version) is not int:
        raise c.fail(
            f"schema_version must be an integer, got {version!r}; write "
            f"schema_version = {CONFIG_SCHEMA_VERSION}",
            "schema_version",
        )
    if version != CONFIG_SCHEMA_VERSION:
        raise c.fail(
            f"schema_version {version!r} is not supported (this version reads "
            f"{CONFIG_SCHEMA_VERSION}); upgrade Fine-Tune Lens",
            "schema_version",
        )
    name = c.string(data, "name", "")

    base = data.get("base_model")
    if isinstance(base, dict):
        c.keys(base, ("path",), "base_model.")
        base = c.string(base, "path", "base_model.", required=True)
    elif base is not None:
        base = c.string(data, "base_model", "")
    if base is not None:
        base = c.path_inside(base, "base_model")

    runs = None
    if "runs" in data:
        if not isinstance(data["runs"], list):
            raise c.fail("'runs' must be an array of tables ([[runs]])", "runs")
        runs_list = []
        for i, run in enumerate(data["runs"]):
            where = f"runs[{i}]."
            if not isinstance(run, dict):
                raise c.fail("each run must be a table", f"runs[{i}]", "runs")
            c.keys(run, _RUN_KEYS, where)
            rpath = c.path_inside(c.string(run, "path", where, required=True), f"{where}path")  # type: ignore[arg-type]
            rname = c.string(run, "name", where) or Path(rpath).name
            runs_list.append(RunSpec(name=rname, path=rpath))
        _unique(c, [r.name for r in runs_list], "runs")
        runs = tuple(runs_list)

    datasets = _dataset_specs(c, data, "datasets")
    training_sets = _dataset_specs(c, data, "training_sets")

    database_url = None
    if "database" in data:
        db = data["database"]
        if not isinstance(db, dict):
            raise c.fail("'database' must be a table with a 'url' key", "database")
        c.keys(db, ("url",), "database.")
        database_url = c.string(db, "url", "database.")

    team = parse_team(c, data["team"]) if "team" in data else None

    return WorkspaceConfig(
        source=path,
        name=name,
        base_model=base,
        runs=runs,
        datasets=datasets,
        training_sets=training_sets,
        database_url=database_url,
        team=team,
    )


def _unique(c: _Checker, names: list[str], table: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise c.fail(f"name {n!r} is used twice; names must be unique", f"{table}[{i}].name", n)
        seen.add(n)


def _dataset_specs(c: _Checker, data: dict, table: str) -> tuple[DatasetSpec, ...] | None:
    """The `[[datasets]]` or `[[training_sets]]` array (the same keys); None when absent (discover)."""
    if table not in data:
        return None
    if not isinstance(data[table], list):
        raise c.fail(f"'{table}' must be an array of tables ([[{table}]])", table)
    specs = []
    for i, ds in enumerate(data[table]):
        where = f"{table}[{i}]."
        if not isinstance(ds, dict):
            raise c.fail(f"each {table.removesuffix('s').replace('_', ' ')} must be a table", f"{table}[{i}]", table)
        c.keys(ds, _DATASET_KEYS, where)
        dpath = c.path_inside(c.string(ds, "path", where, required=True), f"{where}path")  # type: ignore[arg-type]
        dname = c.string(ds, "name", where) or Path(dpath).stem
        kind = c.string(ds, "kind", where)
        if kind is not None and kind not in REQUIRED_ROLES:
            raise c.fail(f"kind {kind!r} is not one of {sorted(REQUIRED_ROLES)}", f"{where}kind", kind)
        cols = ds.get("columns", {})
        if not isinstance(cols, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in cols.items()):
            raise c.fail("'columns' must map role names to column names", f"{where}columns", "columns")
        for role in cols:
            if role not in ROLE_ALIASES:
                raise c.fail(f"unknown role '{role}'.{_hint(role, tuple(ROLE_ALIASES))}", f"{where}columns.{role}", role)
        specs.append(DatasetSpec(name=dname, path=dpath, kind=kind, columns=tuple(sorted(cols.items()))))
    _unique(c, [d.name for d in specs], table)
    return tuple(specs)
