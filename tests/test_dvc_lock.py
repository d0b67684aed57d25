"""The committed dvc.lock describes the committed code: every source-code and params dependency DVC
recorded hashes as the tree does now. Otherwise a fresh clone's `dvc repro` would retrain, and the
paper/ outputs would not be the outputs of this code."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("packages/", "params.yaml")


def changed_source_dependencies() -> dict[str, object]:
    from dvc.repo import Repo

    changed: dict[str, object] = {}
    with Repo(str(ROOT)) as repo:
        for stage, entries in repo.status().items():
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict):
                    continue
                for path, state in entry.get("changed deps", {}).items():
                    if path.startswith(SOURCES):  # data and run outputs are absent in a clean clone
                        changed[f"{stage}: {path}"] = state
    return changed


def test_the_lock_records_the_committed_sources_and_params():
    changed = changed_source_dependencies()
    assert not changed, ("dvc.lock does not describe the tree; run `nox -s repro` (finished runs are reused) "
                         f"and commit dvc.lock with paper/: {changed}")
