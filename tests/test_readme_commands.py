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


def test_verify_theory_writes_what_the_theory_stage_writes():
    """`nox -s verify_theory` and the `theory` DVC stage run one command, so the README's theory command
    leaves the committed paper/tables/theory.md (which the stage wrote) as it is."""
    import ast

    import yaml

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["theory"]["cmd"].split()
    assert stage[:3] == ["python", "-m", "rd_theory.verify"], stage
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    session = next(node for node in tree.body
                   if isinstance(node, ast.FunctionDef) and node.name == "verify_theory")
    call = next(node for node in ast.walk(session) if isinstance(node, ast.Call)
                and any(isinstance(a, ast.Constant) and a.value == "rd_theory.verify" for a in node.args))
    constants = [a.value for a in call.args if isinstance(a, ast.Constant)]
    assert constants[constants.index("rd_theory.verify"):] == stage[2:]
