"""The README is the contract: CI must run exactly its test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(label: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {label} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, flags=re.S)
    assert match, f"README.md has no fenced command after <!-- {label} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_command("test-command") in ci_lines


def test_main_job_command_names_a_real_nox_session():
    command = readme_command("main-command")
    session = re.search(r"nox -s (\w+)", command)
    assert session, command
    assert f"def {session.group(1)}(" in (ROOT / "noxfile.py").read_text()
