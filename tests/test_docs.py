"""README keeps its promises: exactly two set-up commands, and CI runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands), "each set-up command is one line"
    assert "streamlit run app.py" in commands[0] and "eval_core demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_second_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert setup_commands()[1] in ci.splitlines()


def test_torch_is_pinned_for_the_local_cpu_wheel():
    reqs = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert "torch==2.13.0" in reqs


def test_every_cli_command_is_in_the_readme():
    from eval_core.cli import build_parser

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"python -m eval_core {name}" in readme
