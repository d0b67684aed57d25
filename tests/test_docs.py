"""The docs site builds, strictly, from a checkout: a broken link, a page left out of the nav or an API
reference that no longer resolves fails the build, and so this test (the same command as `nox -s docs`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES_THE_MANUAL_PROMISES = [
    "getting-started.md", "reproducing.md", "protocol.md", "theory.md", "kernels.md", "configuration.md",
    "inspect.md", "diffusability.md", "performance.md", "offline.md",
    "api/rd_theory.md", "api/rd_kernels.md", "api/rd_train.md",
]


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [str(value)]
    return pages


def test_the_site_builds_strict_with_every_page_and_the_generated_api(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert set(PAGES_THE_MANUAL_PROMISES) <= set(nav)
    api = (tmp_path / "site" / "api" / "rd_theory" / "index.html").read_text()
    assert 'id="rd_theory.toy.table3"' in api  # rendered from the docstring, not written by hand
    assert "Table 3 in number" in api


def test_a_broken_link_fails_the_build(tmp_path):
    """The check can fail: the same tree with one link to a page that does not exist."""
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", copy / "docs")
    for package in ("rd-theory", "rd-kernels", "rd-train"):
        (copy / "packages" / package).mkdir(parents=True)
        (copy / "packages" / package / "src").symlink_to(ROOT / "packages" / package / "src")
    page = copy / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr
