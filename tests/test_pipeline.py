"""`dvc repro` on a miniature profile: every declared output appears, and a second repro does nothing.

Runs the real dvc.yaml (copied with the packages' sources into a scratch git repo) with
tests/data/miniature_params.yaml: 8-step runs, one λ, two β, one rate target, two seeds, one job (the
worker pool has its own tests in packages/rd-train/tests/test_sweep_workers.py).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rd_train.training.data import dataset_md5

# Its module-scoped fixture (a miniature `dvc repro`, minutes) is built once: every test of the module
# runs in one xdist worker (noxfile: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("pipeline")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def declared_outputs(dvc_yaml: Path) -> list[str]:
    """Every out, metric and plot path of the non-foreach stages (the paper artefacts)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    paths = []
    for stage in stages.values():
        if "foreach" in stage:
            continue
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def workspace_env(work: Path) -> dict[str, str]:
    """Only the project environment's tools, and a HOME of the scratch workspace's own."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "TRITON_INTERPRET": "0",
            "HOME": str(work), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "2", "RD_TRAIN_CORES": "2"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    dvc = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")
    if dvc is None:
        pytest.fail("dvc is not installed in the test environment (noxfile TOOLS installs it)")
    work = tmp_path_factory.mktemp("pipeline")
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    shutil.copy(ROOT / "tests" / "data" / "miniature_params.yaml", work / "params.yaml")
    for package in ("rd-theory", "rd-kernels", "rd-train"):
        shutil.copytree(ROOT / "packages" / package / "src", work / "packages" / package / "src")
    # The aggregate stage's other inputs.
    pilot = Path("benchmarks") / "results" / "cpu-convergence-pilot.json"
    (work / pilot.parent).mkdir(parents=True)
    shutil.copy(ROOT / pilot, work / pilot)
    replicate = Path("paper") / "records" / "outside"  # trained under params.yaml, not these params
    shutil.copytree(ROOT / replicate, work / replicate)

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=work, env=workspace_env(work), capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "config", "core.analytics", "false")
    # The miniature dataset differs from the default one, so it gets its own pin (rd-train prepare --pin).
    embedded = yaml.safe_load((work / "params.yaml").read_text())["embedded"]
    sets = [arg for key, value in embedded.items() for arg in ("--set", f"data.{key}={value}")]
    run(str(BIN / "rd-train"), "prepare", "--out", "data/rebuilt/embedded", *sets, "--pin", "data.dvc")
    shutil.rmtree(work / "data" / "rebuilt")  # as on a fresh clone: only the pin is committed
    pin = (work / "data.dvc").read_text()
    first = run(dvc, "repro")
    second = run(dvc, "repro")
    return work, first, second, run, dvc, pin


def test_every_declared_output_is_produced(pipeline):
    work, *_ = pipeline
    missing = [p for p in declared_outputs(work / "dvc.yaml") if not (work / p).exists()]
    assert not missing, missing
    for family in ("pixel", "perceptual", "adversarial"):
        for sweep in ("fixed", "geco", "length", "control"):
            if sweep != "control" or family != "pixel":
                assert list((work / "runs" / sweep / family).glob("*/metrics.json")), (sweep, family)
    claims = (work / "paper" / "tables" / "claims.md").read_text()
    assert "VGG16 (HED) features" in claims and "PatchGAN" in claims
    assert "LPIPS" not in claims  # the HED VGG16 is never called LPIPS
    for section in ("## Summary", "## Every cell", "## Balancer control", "## Left out"):
        assert section in claims
    assert claims.index("## Summary") < claims.index("## Every cell")  # the answer first
    assert "the same at twice the steps" in claims  # the length replicate's cells
    convergence = (work / "paper" / "tables" / "convergence.md").read_text()
    assert "never a filter" in convergence and "tracking error" in convergence
    diffusability = (work / "paper" / "tables" / "diffusability.md").read_text()
    assert "## Verdicts: generation improves with λ — every run, no filter" in diffusability
    assert len(list((work / "analysis" / "diffusability" / "runs").glob("*.json"))) == 2 * 1 + 2 * 2
    assert "VGG16 (HED) blocks 1-1" in (work / "paper" / "tables" / "theory.md").read_text()


def test_the_records_hold_every_run_and_rebuild_the_report(pipeline):
    """Protocol v3 (issue 30 H): `records` writes every finished run as git-trackable JSON lines, and
    `rd-train report --records` rebuilds claims.md from them byte for byte, with no run directory."""
    from rd_train.protocol.records import sources

    work, _, _, run, *_ = pipeline
    stage, replicate = sources(work / "paper" / "records")  # the stage's runs, and the copied replicate's
    assert stage.origin is None and replicate.folder.endswith("paper/records/outside/spatial-length")
    records = stage.records
    finished = list((work / "runs").rglob("metrics.json"))
    assert len(records) == len(finished)
    assert {r["identity"]["sweep"] for r in records} == {"fixed", "geco", "length", "control"}
    assert {r["identity"]["architecture"] for r in records} == {"vector", "spatial"}
    rebuilt = work / "rebuilt"
    run(str(BIN / "rd-train"), "report", "--params", "params.yaml", "--records", "paper/records",
        "--out", str(rebuilt), "--length-pilot", "benchmarks/results/cpu-convergence-pilot.json")
    for table in ("claims.md", "convergence.md", "sweeps.md", "runs.csv"):
        assert (rebuilt / "tables" / table).read_bytes() == (work / "paper" / "tables" / table).read_bytes()
    # The default profile's replicate, trained under other params, stays out of this profile's tables.
    claims = (work / "paper" / "tables" / "claims.md").read_text()
    aside = "`paper/records/outside/spatial-length` set aside (18 runs trained under other params"
    assert aside in claims
    assert (work / "paper" / "records" / "outside" / "spatial-length" / "source.json").is_file()  # kept
    assert "spatial/length/" not in (work / "paper" / "tables" / "runs.csv").read_text()


def test_the_spatial_sweep_trains_autoencoderkl_runs_and_reports_them(pipeline):
    """The `spatial` stage: AutoencoderKL GECO runs of params.yaml `spatial` under runs/spatial (its β list
    is empty: no fixed-β sweep), in claims.md beside the vector VAE's."""
    work, *_ = pipeline
    for family in ("pixel", "perceptual"):
        runs = list((work / "runs" / "spatial" / "geco" / family).glob("*/metrics.json"))
        assert runs, family
        config = json.loads(runs[0].read_text())["config"]
        assert config["model"]["kind"] == "spatial" and config["model"]["block_out_channels"] == [8, 8]
    assert not (work / "runs" / "spatial" / "fixed").exists()
    assert not list((work / "runs" / "spatial").glob("*/adversarial"))  # spatial.families: perceptual only
    claims = (work / "paper" / "tables" / "claims.md").read_text()
    assert "| anisotropy falls with λ at matched rate | VGG16 (HED) features | spatial |" in claims
    rows = [row for row in (work / "paper" / "tables" / "runs.csv").read_text().splitlines()
            if row.startswith("spatial/")]
    assert len(rows) == 2  # one target x (pixel, λ = 1) x one seed


def test_the_sweeps_print_one_line_per_run_and_no_framework_banners(pipeline):
    _, first, *_ = pipeline
    lines = [line for line in first.splitlines() if line.startswith("[fixed/perceptual]")]
    header = "[fixed/perceptual] 4 runs, 1 worker(s) x 2 thread(s) on 2 core(s)"
    start = lines.index(header)
    lines = lines[start:start + 6]
    assert len(lines) == 6 and "4/4" in lines[-2] and "stage done" in lines[-2], lines
    assert lines[-1].startswith("[fixed/perceptual] 4/4 runs in")
    assert "GPU available" not in first and "litlogger" not in first
    # The spatial stage names each block it trains (stdout; the sweep's own lines go to stderr).
    printed = first.splitlines()
    assert "[spatial] geco/perceptual: AutoencoderKL runs -> runs/spatial/geco/perceptual" in printed
    assert "[geco/perceptual] 1 runs, 1 worker(s) x 2 thread(s) on 2 core(s)" in printed  # spatial: one seed


def test_the_theory_stage_verifies_every_claim_and_reproduces_table_3(pipeline):
    """The fast twin of rd-theory's test_verify (marked slow): the theory stage's report, from the same
    command with the profile's params."""
    from rd_theory import verify

    work, *_ = pipeline
    table = (work / "paper" / "tables" / "theory.md").read_text()
    assert "FAIL" not in table
    # Every verified claim, and the certificate of the feature network the params train with.
    assert table.count("| pass |") == len(verify.VERIFIED) + 1
    assert "on the VGG16 (HED) blocks" in table
    assert (work / "paper" / "figures" / "toy_anisotropy.png").stat().st_size > 10_000
    toy_table = (work / "paper" / "tables" / "toy_anisotropy.md").read_text()
    published_beside_reproduced = "| 17.26 | 17.2645 | 17.25 | 17.2452 | 0.6486 | 0.648579 |"
    assert f"| Perceptual metric (ramping metric) {published_beside_reproduced}" in toy_table
    assert "5 of 5 numbers reproduce" in toy_table


def test_second_repro_does_nothing(pipeline):
    _, _, second, *_ = pipeline
    assert "Data and pipelines are up to date" in second
    assert "Running stage" not in second


def test_data_dvc_versions_the_rebuilt_dataset(pipeline):
    work, first, _, _, _, pin = pipeline
    assert "Importing 'data/rebuilt/embedded' -> 'data/embedded'" in first
    assert (work / "data.dvc").read_text() == pin  # DVC's own rewrite of the pin changes no byte
    assert f"md5: {dataset_md5(work / 'data' / 'embedded')}" in pin


def test_metrics_are_a_readable_table_of_verdicts(pipeline):
    """One row per headline verdict, a handful of columns (not one row of hundreds), and plots render."""
    _, _, _, run, dvc, _ = pipeline
    shown = run(dvc, "metrics", "show").strip().splitlines()
    header = shown[0].split()
    # p_holm is null where a cell is not testable (the miniature's one λ), and DVC leaves null columns out.
    assert {"Path", "effect", "runs", "verdict"} <= set(header) <= {
        "Path", "effect", "effect_high", "effect_low", "p_holm", "runs", "verdict"}, header
    rows = sorted(line.split()[0] for line in shown[1:])
    assert rows == sorted(f"paper/metrics/{name}.json" for name in (
        "rate_vgg16_vector", "rate_patchgan_vector", "anisotropy_vgg16_vector", "anisotropy_patchgan_vector",
        "anisotropy_vgg16_spatial")), rows
    run(dvc, "plots", "show", "--json")


def test_a_rebuild_that_differs_from_the_pin_stops_the_pipeline(pipeline):
    """Integrity: on a fresh clone `prepare` rebuilds the data; other bytes than data.dvc pins stop it.

    Runs last: it empties the workspace's DVC cache.
    """
    work, _, _, _, dvc, pin = pipeline
    wrong = pin.replace(pin.split("md5: ")[1].split("\n")[0], "0" * 32 + ".dir")
    try:
        (work / "data.dvc").write_text(wrong)
        for built in ("data/rebuilt", "data/embedded", ".dvc/cache"):  # a fresh clone: no data, no cache
            shutil.rmtree(work / built)
        done = subprocess.run([dvc, "repro"], cwd=work, env=workspace_env(work), capture_output=True,
                              text=True, check=False)
        assert done.returncode != 0
        assert "but data.dvc pins 00000000000000000000000000000000.dir" in done.stderr + done.stdout
        assert "Running stage 'fixed" not in done.stdout  # nothing trained on the unpinned bytes
        assert (work / "data.dvc").read_text() == wrong  # and the pin was not rewritten
    finally:
        (work / "data.dvc").write_text(pin)


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/gpu.yaml", "profiles/paper.yaml",
                                     "tests/data/miniature_params.yaml"])
def test_every_profile_has_every_params_section_a_stage_declares(profile):
    """DVC stops a stage whose declared params section is absent: every profile carries them all."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {entry.split(".")[0] for stage in stages.values()
                for entry in (stage.get("do", stage).get("params") or []) if isinstance(entry, str)}
    missing = declared - set(yaml.safe_load((ROOT / profile).read_text()))
    assert not missing, f"{profile} lacks {sorted(missing)}"


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/gpu.yaml", "profiles/paper.yaml"])
def test_every_profile_builds_valid_runs(profile):
    """Each profile validates as a whole (`load_params`: every section, and every run any training stage
    trains), and its data section agrees with what prepare builds (or reads another dataset): a profile is
    ready to run where its data exists."""
    from rd_train.params import load_params

    params = load_params(ROOT / profile)
    assert sum(len(params.run_configs(sweep, family, "runs")) for sweep in ("fixed", "geco")
               for family in ["pixel", *params.families]) > 0
    data, embedded = params.raw["data"], params.raw["embedded"]
    if data["name"] == "embedded":
        assert embedded["image_size"] % data["image_size"] == 0
        assert (data["n_train"], data["n_val"], data["seed"]) == (embedded["n_train"], embedded["n_val"],
                                                                 embedded["seed"])
