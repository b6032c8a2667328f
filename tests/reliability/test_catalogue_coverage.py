"""Every case of the reliability catalogue (51 cases, docs in README "Security and data safety") is a
named test here: `test_case_NN_<what>`, in the module of its area."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
AREAS = {  # catalogue sections -> the module that holds their cases
    "test_reliability_model_loading.py": range(1, 12),
    "test_reliability_server.py": (12, 15, 16, 18, 19),
    "test_reliability_rendering.py": (13, 14, 17, 20),
    "test_reliability_ratings.py": (21, 22, 23, 25, 26, 27, 28, 29, 30),
    "test_reliability_faults.py": (24,),
    "test_reliability_metrics.py": range(31, 41),
    "test_reliability_inputs.py": range(41, 52),
}


def _cases() -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    for path in sorted(HERE.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and (m := re.fullmatch(r"test_case_(\d\d)_\w+", node.name)):
                assert ast.get_docstring(node), f"{path.name}::{node.name} has no docstring stating the expected behaviour"
                found[int(m.group(1))].append(f"{path.name}::{node.name}")
    return found


def test_every_catalogue_case_is_a_named_test_in_its_area_module():
    found = _cases()
    assert sorted(found) == list(range(1, 52)), f"missing cases: {sorted(set(range(1, 52)) - set(found))}"
    for module, numbers in AREAS.items():
        for n in numbers:
            assert any(name.startswith(module) for name in found[n]), f"case {n} is not in {module}: {found[n]}"
