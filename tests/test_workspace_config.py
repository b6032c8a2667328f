"""Bad and good inputs for eval_core.workspace_config.parse_workspace_config (ftlens.toml)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from eval_core.errors import WorkspaceError
from eval_core.workspace_config import DatasetSpec, RunSpec, WorkspaceConfig, parse_workspace_config


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "ftlens.toml"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def parse(tmp_path: Path, text: str | bytes) -> WorkspaceConfig:
    return parse_workspace_config(write(tmp_path, text))


def parse_error(tmp_path: Path, text: str | bytes) -> WorkspaceError:
    """The WorkspaceError parsing `text` raises; it must always name the file."""
    path = write(tmp_path, text)
    with pytest.raises(WorkspaceError) as info:
        parse_workspace_config(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


FULL = """\
schema_version = 1
name = "Support bot fine-tune"
base_model = "models/base"

[[runs]]
name = "support-ft"
path = "runs/support-ft"

[[runs]]
path = "runs/lora-r8/"   # no name: the folder name is used

[[datasets]]
name = "support_test"
path = "heldout/support_test.jsonl"
kind = "generation"
columns = { prompt = "question", reference = "answer", category = "topic" }

[[datasets]]
path = "heldout/general.csv"

[database]
url = "sqlite:///.ftlens/results.sqlite"
"""


# --- good inputs --------------------------------------------------------------------------


def test_full_config_gives_typed_values(tmp_path):
    cfg = parse(tmp_path, FULL)
    assert cfg.source == tmp_path / "ftlens.toml"
    assert cfg.name == "Support bot fine-tune"
    assert cfg.base_model == "models/base"
    assert cfg.runs == (RunSpec("support-ft", "runs/support-ft"), RunSpec("lora-r8", "runs/lora-r8"))
    support, general = cfg.datasets
    assert support == DatasetSpec(
        name="support_test",
        path="heldout/support_test.jsonl",
        kind="generation",
        columns=(("category", "topic"), ("prompt", "question"), ("reference", "answer")),
    )
    assert support.column_map == {"prompt": "question", "reference": "answer", "category": "topic"}
    assert general == DatasetSpec(name="general", path="heldout/general.csv")
    assert general.kind is None and general.column_map == {}
    assert cfg.database_url == "sqlite:///.ftlens/results.sqlite"


def test_base_model_as_table(tmp_path):
    assert parse(tmp_path, '[base_model]\npath = "./models/base"\n').base_model == "models/base"


def test_columns_as_sub_table(tmp_path):
    cfg = parse(tmp_path, '[[datasets]]\npath = "probes.parquet"\nkind = "probe"\n\n'
                          '[datasets.columns]\nprompt = "q"\nanswer = "label"\nchoices = "options"\n')
    assert cfg.datasets[0].column_map == {"prompt": "q", "answer": "label", "choices": "options"}
    assert cfg.datasets[0].kind == "probe"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# just a comment\n\n", id="only-comments"),
        pytest.param("schema_version = 1\n", id="only-version"),
    ],
)
def test_empty_config_means_discover_everything(tmp_path, text):
    cfg = parse(tmp_path, text)
    assert (cfg.name, cfg.base_model, cfg.runs, cfg.datasets, cfg.database_url) == (None,) * 5


def test_empty_arrays_are_kept_as_empty(tmp_path):
    cfg = parse(tmp_path, "runs = []\ndatasets = []\n")
    assert cfg.runs == () and cfg.datasets == ()


def test_utf8_bom_and_crlf_accepted(tmp_path):
    cfg = parse(tmp_path, codecs.BOM_UTF8 + b'name = "caf\xc3\xa9"\r\nbase_model = "base"\r\n')
    assert (cfg.name, cfg.base_model) == ("café", "base")


@pytest.mark.parametrize(
    "run_path, expected_name",
    [("runs/support-ft", "support-ft"), ("runs/a/b/", "b"), ("output_dir", "output_dir")],
)
def test_run_without_name_gets_folder_name(tmp_path, run_path, expected_name):
    cfg = parse(tmp_path, f'[[runs]]\npath = "{run_path}"\n')
    assert cfg.runs[0].name == expected_name


@pytest.mark.parametrize(
    "ds_path, expected_name",
    [("heldout/support_test.jsonl", "support_test"), ("probes.v2.parquet", "probes.v2"), ("data/general.CSV", "general")],
)
def test_dataset_without_name_gets_file_stem(tmp_path, ds_path, expected_name):
    cfg = parse(tmp_path, f'[[datasets]]\npath = "{ds_path}"\n')
    assert cfg.datasets[0].name == expected_name


# --- bad inputs ---------------------------------------------------------------------------

RUN_A = '[[runs]]\nname = "a"\npath = "runs/a"\n'  # lines 1-3 when it comes first

ERRORS = [
    # (config text, line, field, message fragment)
    pytest.param('name = "x"\nbase_model = \n', 2, None, "not valid TOML", id="toml-missing-value"),
    pytest.param('name = "x"\n\n[[runs]\npath = "a"\n', 3, None, "not valid TOML", id="toml-bad-header"),
    pytest.param('name = "x"\nname = "y"\n', 2, None, "not valid TOML", id="toml-duplicate-key"),
    # tomllib reports these "at end of document"; the last line is the best place to point.
    pytest.param('name = "x"\n\nruns = [\n', 3, None, "not valid TOML", id="toml-unclosed-array"),
    pytest.param('name = "x"\nbase_model = "abc', 2, None, "not valid TOML", id="toml-unterminated-string"),
    # unknown keys, with a "did you mean" hint
    pytest.param('name = "x"\nbse_model = "base"\n', 2, "bse_model", "Did you mean 'base_model'?", id="unknown-top-key"),
    pytest.param('[databse]\nurl = "sqlite://"\n', 1, "databse", "Did you mean 'database'?", id="unknown-top-table"),
    pytest.param(RUN_A + '\n[[runs]]\npth = "runs/b"\n', 6, "runs[1].pth", "Did you mean 'path'?", id="unknown-run-key"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\ncolums = { prompt = "q" }\n', 3, "datasets[0].colums",
                 "Did you mean 'columns'?", id="unknown-dataset-key"),
    pytest.param('[database]\nuri = "sqlite://"\n', 2, "database.uri", "Did you mean 'url'?", id="unknown-database-key"),
    pytest.param('[base_model]\nfolder = "base"\n', 2, "base_model.folder", "Allowed keys: path.", id="unknown-base-model-key"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\ncolumns = { promt = "q", reference = "a" }\n', 3,
                 "datasets[0].columns.promt", "unknown role 'promt'. Did you mean 'prompt'?", id="unknown-column-role"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\nkind = "chat"\n', 3, "datasets[0].kind",
                 "['generation', 'probe', 'text']", id="unknown-kind"),
    # paths that leave the workspace
    pytest.param('base_model = "../models/base"\n', 1, "base_model", "leaves the workspace", id="base-model-dotdot"),
    pytest.param('base_model = "/opt/models/base"\n', 1, "base_model", "leaves the workspace", id="base-model-absolute"),
    pytest.param('name = "x"\n[base_model]\npath = "models/../../base"\n', 3, "base_model", "leaves the workspace",
                 id="base-model-table-dotdot"),
    pytest.param(RUN_A + '\n[[runs]]\nname = "b"\npath = "../elsewhere/run"\n', 7, "runs[1].path", "leaves the workspace",
                 id="run-path-dotdot"),
    pytest.param('[[runs]]\npath = "/tmp/run"\n', 2, "runs[0].path", "leaves the workspace", id="run-path-absolute"),
    pytest.param('[[datasets]]\npath = "heldout/../../secret.jsonl"\n', 2, "datasets[0].path", "leaves the workspace",
                 id="dataset-path-dotdot"),
    pytest.param('[[datasets]]\npath = "/etc/passwd.csv"\n', 2, "datasets[0].path", "leaves the workspace",
                 id="dataset-path-absolute"),
    # duplicate names point at the second one
    pytest.param(RUN_A + '\n[[runs]]\nname = "a"\npath = "runs/b"\n', 6, "runs[1].name", "'a' is used twice",
                 id="duplicate-run-name"),
    pytest.param('[[runs]]\npath = "x/ckpt"\n\n[[runs]]\npath = "y/ckpt"\n', 5, "runs[1].name", "'ckpt' is used twice",
                 id="duplicate-default-run-name"),
    pytest.param('[[datasets]]\nname = "d"\npath = "a.jsonl"\n\n[[datasets]]\nname = "d"\npath = "b.jsonl"\n', 6,
                 "datasets[1].name", "'d' is used twice", id="duplicate-dataset-name"),
    pytest.param('[[datasets]]\npath = "a/test.jsonl"\n\n[[datasets]]\npath = "b/test.csv"\n', 5,
                 "datasets[1].name", "'test' is used twice", id="duplicate-default-dataset-name"),
    # required values: a missing key points at the header of its table
    pytest.param('[[runs]]\nname = "a"\n', 1, "runs[0].path", "'path' is required", id="run-without-path"),
    pytest.param(RUN_A + '\n[[runs]]\nname = "b"\n', 5, "runs[1].path", "'path' is required", id="second-run-without-path"),
    pytest.param('[[datasets]]\nkind = "text"\n', 1, "datasets[0].path", "'path' is required", id="dataset-without-path"),
    pytest.param('[base_model]\n', 1, "base_model.path", "'path' is required", id="base-model-table-without-path"),
    # wrong types
    pytest.param('name = 3\n', 1, "name", "must be a non-empty string, got 3", id="name-int"),
    pytest.param('name = "  "\n', 1, "name", "non-empty string", id="name-blank"),
    pytest.param('base_model = 3\n', 1, "base_model", "non-empty string", id="base-model-int"),
    pytest.param('runs = "x"\n', 1, "runs", "array of tables", id="runs-string"),
    pytest.param('runs = ["x"]\n', 1, "runs[0]", "each run must be a table", id="runs-array-of-strings"),
    pytest.param('datasets = 3\n', 1, "datasets", "array of tables", id="datasets-int"),
    pytest.param('datasets = [1]\n', 1, "datasets[0]", "each dataset must be a table", id="datasets-array-of-ints"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\ncolumns = 3\n', 3, "datasets[0].columns", "map role names",
                 id="columns-int"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\ncolumns = { prompt = 3 }\n', 3, "datasets[0].columns", "map role names",
                 id="columns-value-int"),
    pytest.param('[[datasets]]\npath = "d.jsonl"\nkind = 1\n', 3, "datasets[0].kind", "non-empty string", id="kind-int"),
    pytest.param('[[runs]]\npath = ["a"]\n', 2, "runs[0].path", "non-empty string", id="run-path-list"),
    pytest.param('database = "sqlite://"\n', 1, "database", "must be a table", id="database-string"),
    pytest.param('[database]\nurl = 5\n', 2, "database.url", "non-empty string", id="database-url-int"),
    # a run's field error points into that run, not at the top-level key of the same name
    pytest.param('name = "ws"\n\n' + RUN_A + '\n[[runs]]\nname = 3\npath = "runs/b"\n', 8, "runs[1].name",
                 "non-empty string", id="run-name-int-after-top-level-name"),
    pytest.param('# name = 3 would be wrong\nname = 3\n', 2, "name", "non-empty string", id="comment-lines-skipped"),
    pytest.param('[[datasets]]\npath = "a.jsonl"\n\n[[datasets]]\npath = "b.jsonl"\n\n[datasets.columns]\npromt = "q"\n',
                 8, "datasets[1].columns.promt", "Did you mean 'prompt'?", id="role-in-second-columns-sub-table"),
    pytest.param('runs = [{ name = "a", path = "x" }, { name = "b", path = "../y" }]\n', 1, "runs[1].path",
                 "leaves the workspace", id="inline-runs-array"),
    # schema version
    pytest.param('schema_version = 2\n', 1, "schema_version", "not supported", id="schema-version-2"),
    pytest.param('schema_version = true\n', 1, "schema_version", "integer", id="schema-version-bool"),
    pytest.param('schema_version = 1.0\n', 1, "schema_version", "integer", id="schema-version-float"),
    pytest.param('schema_version = "1"\n', 1, "schema_version", "integer", id="schema-version-string"),
]


@pytest.mark.parametrize("text, line, field, fragment", ERRORS)
def test_bad_config_raises_workspace_error(tmp_path, text, line, field, fragment):
    err = parse_error(tmp_path, text)
    assert fragment in err.message
    assert err.line == line
    assert err.field == field


def test_unknown_key_error_string_shows_file_line_and_field(tmp_path):
    err = parse_error(tmp_path, 'bse_model = "base"\n')
    assert str(err).startswith(f"{tmp_path / 'ftlens.toml'}:1, field 'bse_model': unknown key 'bse_model'.")


def test_missing_config_file(tmp_path):
    with pytest.raises(WorkspaceError) as info:
        parse_workspace_config(tmp_path / "ftlens.toml")
    assert "cannot read the config" in info.value.message
    assert str(tmp_path / "ftlens.toml") in str(info.value)


def test_config_not_utf8(tmp_path):
    err = parse_error(tmp_path, b'name = "caf\xe9"\n')
    assert "cannot read the config" in err.message
