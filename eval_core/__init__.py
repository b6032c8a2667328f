"""Fine-Tune Lens core library: discovery, safe loading, scoring and reports for fine-tuning runs.

The public API is what this module exports. It never imports Streamlit (a test enforces it), and
importing it does not import torch: model work is imported where it is used.

Example:
    >>> from eval_core import discover_workspace
    >>> ws = discover_workspace(".demo_workspace")  # doctest: +SKIP
    >>> [c.step for c in ws.checkpoints]
    [30, 60, 90, 120, 150, 180]
"""

from eval_core.checkpoints import find_checkpoint_files, inspect_checkpoint, is_checkpoint_dir
from eval_core.demo import DemoSettings, build_demo_workspace, is_demo_built
from eval_core.errors import (
    CheckpointError,
    DatasetError,
    EvalCoreError,
    UnsafeCheckpointError,
    WorkspaceError,
)
from eval_core.heldout_sets import HeldoutSet, read_heldout_set
from eval_core.model_loading import LoadedModel, load_model, open_model, release_model
from eval_core.records import (
    WORKSPACE_SCHEMA,
    WORKSPACE_SCHEMA_VERSION,
    CheckpointRecord,
    DatasetRecord,
    LogFileRecord,
    ProblemRecord,
    RunRecord,
    WorkspaceSummary,
)
from eval_core.version import __version__
from eval_core.workspace import check_workspace_root, discover_workspace
from eval_core.workspace_config import WorkspaceConfig, parse_workspace_config

__all__ = [
    "CheckpointError",
    "CheckpointRecord",
    "DatasetError",
    "DatasetRecord",
    "DemoSettings",
    "EvalCoreError",
    "HeldoutSet",
    "LoadedModel",
    "LogFileRecord",
    "ProblemRecord",
    "RunRecord",
    "UnsafeCheckpointError",
    "WORKSPACE_SCHEMA",
    "WORKSPACE_SCHEMA_VERSION",
    "WorkspaceConfig",
    "WorkspaceError",
    "WorkspaceSummary",
    "__version__",
    "build_demo_workspace",
    "check_workspace_root",
    "discover_workspace",
    "find_checkpoint_files",
    "inspect_checkpoint",
    "is_checkpoint_dir",
    "is_demo_built",
    "load_model",
    "open_model",
    "parse_workspace_config",
    "read_heldout_set",
    "release_model",
]
