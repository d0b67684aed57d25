"""The README's results table is what the pipeline's verdict files say, and the README stays a map."""

from __future__ import annotations

import json
import shutil

import pytest
from results_glance import END, ROOT, START, glance_block, readme_block

README = (ROOT / "README.md").read_text()


def test_the_readme_table_is_generated_from_paper_metrics():
    assert readme_block(README) == glance_block(), (
        "README.md's results table differs from paper/metrics/; run "
        "`.nox/project/bin/python tests/results_glance.py --write`")


def test_a_changed_verdict_changes_the_table(tmp_path):
    """The check can fail: one verdict file changed, and the table no longer matches the README."""
    paper = tmp_path / "paper"
    shutil.copytree(ROOT / "paper" / "metrics", paper / "metrics")
    path = paper / "metrics" / "rate_vgg16_vector.json"
    entry = json.loads(path.read_text())
    entry["verdict"], entry["effect"] = "reversed", 0.5
    path.write_text(json.dumps(entry))
    assert glance_block(paper) != readme_block(README)
    assert "| **reversed** | +50.0%" in glance_block(paper)


def test_an_unknown_verdict_file_is_refused(tmp_path):
    paper = tmp_path / "paper"
    shutil.copytree(ROOT / "paper" / "metrics", paper / "metrics")
    (paper / "metrics" / "something_else.json").write_text("{}")
    with pytest.raises(ValueError, match=r"something_else\.json"):
        glance_block(paper)


def test_the_readme_is_a_map_not_the_manual():
    assert len(README) <= 12_000, f"README.md has {len(README)} characters; move detail to docs/"
    assert README.index(START) < README.index(END)
    order = ["## Results at a glance", "## The two commands", "## Use it for", "## Where the rest lives",
             "## How to cite"]
    assert [README.index(heading) for heading in order] == sorted(README.index(h) for h in order)
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert marker in README
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert {"cff-version", "message", "title", "authors"} <= set(citation)  # what CFF 1.2.0 requires
    assert citation["preferred-citation"]["title"] == "How Neural Losses Shape VAE Latents"
    assert "2606.00635" in README
