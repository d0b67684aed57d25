"""The benchmark scripts a lent GPU runs (benchmarks/gpu_session.sh) still run: their CPU modes, end to
end, with few steps. Slow (a minute or two): ``nox -s tests -- -m slow``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_training_step_benchmark_runs_every_variant_and_profile_on_cpu(tmp_path):
    out = tmp_path / "training.json"
    run([str(ROOT / "benchmarks" / "training_step.py"), "--device", "cpu", "--out", str(out),
         "--steps", "72", "--start", "60", "--profile-steps", "4"], tmp_path)
    results = json.loads(out.read_text())["results"]
    for family in ("pixel", "patchgan"):
        for variant in ("fused", "stepgraph", "cudagraphs", "eager", "compiled"):
            timed = results[f"{family}/{variant}"]
            assert timed["ms_per_step"] > 0, (family, variant)
            # steps 60-71 span the end of the second epoch (32 steps each): timed apart from the steps
            assert timed["epoch_ends_timed"] == 1 and timed["ms_per_epoch_end"] > 0, (family, variant)
            assert 0 < timed["ms_per_step_inside_epochs"] < timed["ms_per_step"], (family, variant)
        for variant in ("fused", "stepgraph"):
            profile = results[f"{family}/{variant}/profile"]
            assert profile["steps"] == 4 and profile["aten_calls_per_step"] > 0


def test_host_overhead_benchmark_runs_against_a_baseline_tree(tmp_path):
    out = tmp_path / "host.json"
    run([str(ROOT / "benchmarks" / "host_overhead.py"), "--out", str(out), "--baseline-src", str(ROOT),
         "--calls", "20", "--repeats", "1", "--rounds", "1"], tmp_path)
    results = json.loads(out.read_text())["results"]
    assert len(results) == 8
    assert all(row["current_us_per_call"] > 0 and row["baseline_us_per_call"] > 0 for row in results.values())


def test_sweep_throughput_runs_the_baseline_tree_and_this_one(tmp_path):
    """Both trees train the same runs (8b4a8ec's keys only, lr floor 0): equal final numbers bit for bit,
    so the ratio compares the same work; every family gets a ratio and a roofline multiple."""
    out = tmp_path / "throughput.json"
    run([str(ROOT / "benchmarks" / "sweep_throughput.py"), "--out", str(out), "--steps", "4"], tmp_path)
    report = json.loads(out.read_text())
    assert set(report["per_family_best_of_repeats"]) == {"pixel", "perceptual", "adversarial"}
    assert all(r["ratio"] > 0 and r["x_roofline"] > 0 and r["training_only_ratio"] > 0
               for r in report["per_family_best_of_repeats"].values())
    for family in report["results"]["current"][0].values():  # training alone is part of the wall time
        assert 0 < family["train_s"] < family["wall_s"]
    assert report["shared_table_build_s"] > 0  # timed on its own, before the sweeps that read the table
    # The roofline counts the FLOPs the step runs: with the table, no forward pass of the VGG16 (HED)
    # targets (counting it made the step look 1.5x closer to its roofline than it is).
    flops = {name: (r["gflop_per_step"], r["gflop_per_step_without_table"])
             for name, r in report["per_family_best_of_repeats"].items()}
    assert flops["perceptual"][0] < 0.8 * flops["perceptual"][1]
    assert flops["pixel"][0] == flops["pixel"][1] and flops["adversarial"][0] == flops["adversarial"][1]
    # The ceiling scales this tree's walls by each step's convolution share: above the measured ratio.
    shares = [r["conv_share"] for r in report["per_family_best_of_repeats"].values()]
    assert all(0 < share < 1 for share in shares)
    assert report["ceiling_outside_convolutions"] > report["all_families_ratio"]
    current, baseline = report["results"]["current"][0], report["results"]["8b4a8ec"][0]
    for family in ("pixel", "perceptual", "adversarial"):
        runs = current[family]["runs"]
        assert len(runs) == 2 and all(r["threads"] == 1 for r in runs.values())
        for name, run_metrics in current[family]["runs"].items():
            assert (run_metrics["kl"], run_metrics["anisotropy"]) == (
                baseline[family]["runs"][name]["kl"], baseline[family]["runs"][name]["anisotropy"])


def test_precision_pilot_trains_three_variants_and_applies_its_rule(tmp_path):
    out = tmp_path / "pilot.json"
    run([str(ROOT / "benchmarks" / "precision_pilot.py"), "--work", str(tmp_path / "work"), "--out", str(out),
         "--steps", "4", "--seeds", "0", "1"], tmp_path)
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"perceptual", "pixel"}
    for family in ("perceptual", "pixel"):
        by_variant = report["runs"][family]
        assert {m["threads"] for v in by_variant.values() for m in v.values()} == {1}
        assert {m["onednn"] for m in by_variant["fp32-reordered"].values()} == {False}
        assert {m["precision"] for m in by_variant["bf16"].values()} == {"bf16-mixed"}
        assert report["summary"][family]["adopt_bf16"] is False  # two seeds: the rule needs five


def test_loop_overhead_benchmark_times_both_loops_and_the_roofline(tmp_path):
    out = tmp_path / "loop.json"
    run([str(ROOT / "benchmarks" / "loop_overhead.py"), "--steps", "8", "--out", str(out)], tmp_path)
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"pixel", "perceptual", "adversarial"}
    # Each family as a CPU sweep trains it: only VGG16 (HED) reads the shared target-feature table.
    assert {name: r["shared_target_table"] for name, r in result["results"].items()} == {
        "pixel": False, "perceptual": True, "adversarial": False}
    for family in result["results"].values():
        assert family["bare_ms"] > 0 and family["roofline_ms"] > 0 and family["gflop_per_step"] > 0
        # Set against the conv's sustained (median) rate too, from the same process's measurements.
        assert family["lightning_over_sustained_conv"] == pytest.approx(
            family["lightning_ms"] * result["sustained_conv_gflops"] / (family["gflop_per_step"] * 1e3))
    # VGG16 (HED) runs the feature network forward and backward on its reconstructions: by far the most
    # FLOPs a step.
    flops = {name: family["gflop_per_step"] for name, family in result["results"].items()}
    assert flops["perceptual"] > 5 * flops["pixel"]


def test_target_table_benchmark_runs_all_three_ways_bit_identically(tmp_path):
    out = tmp_path / "table.json"
    run([str(ROOT / "benchmarks" / "target_table.py"), "--steps", "4", "--out", str(out)], tmp_path)
    result = json.loads(out.read_text())
    assert set(result["seconds"]) == {"without", "with table", "shared table"}
    assert result["metrics_bit_identical"] is True


def test_design_flops_counts_every_run_of_the_design_and_its_floors(tmp_path):
    """Every run of the default design is counted once (the vector sweeps and the AutoencoderKL's), the
    VGG16 (HED) steps counted as the sweep trains them (shared table), and each floor is the sum of its
    blocks."""
    from rd_train.params import load_params

    out = tmp_path / "design.json"
    run([str(ROOT / "benchmarks" / "design_flops.py"), "--steps", "2", "--out", str(out)], tmp_path)
    report = json.loads(out.read_text())
    params = load_params(ROOT / "params.yaml")
    expected = sum(len(p.run_configs(sweep, family, tmp_path)) for p in (params, params.spatial_params())
                   for sweep, family in p.blocks)
    blocks = report["blocks"]
    assert report["total"]["runs"] == sum(b["runs"] for b in blocks.values()) == expected
    assert {name: b["shared_target_table"] for name, b in blocks.items()} == {
        "vector/pixel": False, "vector/perceptual": True, "vector/adversarial": False,
        "AutoencoderKL/pixel": False, "AutoencoderKL/perceptual": True}
    for key in ("tflop", "roofline_min", "step_alone_min"):
        assert report["total"][key] == pytest.approx(sum(b[key] for b in blocks.values()))
    assert 0 < report["total"]["roofline_min"] < report["total"]["step_alone_min"]


def test_step_host_costs_times_each_shortcut_against_what_it_replaced_bit_identically(tmp_path):
    out = tmp_path / "costs.json"
    run([str(ROOT / "benchmarks" / "step_host_costs.py"), "--out", str(out), "--calls", "3",
         "--repeats", "1"], tmp_path)
    results = json.loads(out.read_text())["results"]
    rows = [row for per_model in results.values() for row in per_model.values()]
    assert len(rows) == 5 and all(row["bit_identical"] and row["old_over_new"] > 0 for row in rows)
    assert all(row["nan_detected"] for row in results["gradient_max_abs"].values())


def test_process_exit_benchmark_times_both_modes_of_both_cases(tmp_path):
    out = tmp_path / "exit.json"
    run([str(ROOT / "benchmarks" / "process_exit.py"), "--out", str(out), "--repeats", "1", "--steps", "4"],
        tmp_path)
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"imported", "fitted"}
    for case in results.values():
        assert set(case) == {"default", "skip_exit_collection"}
        assert all(mode["median_exit_s"] > 0 and mode["gc_objects"] > 0 for mode in case.values())


def test_spatial_length_keeps_a_smoke_tests_records_out_of_the_committed_ones(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "spatial_length.py"), "--work",
                           str(tmp_path / "work"), "--out", str(tmp_path / "out.json"), "--steps", "4"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "pass --records-out DIR" in done.stderr
    assert not (tmp_path / "work").exists()


def test_spatial_length_trains_the_replicate_and_reports_both_lengths(tmp_path):
    out = tmp_path / "spatial-length.json"
    records = tmp_path / "spatial-length-records"
    run([str(ROOT / "benchmarks" / "spatial_length.py"), "--work", str(tmp_path / "work"), "--out", str(out),
         "--records-out", str(records), "--steps", "4"], tmp_path)
    result = json.loads(out.read_text())
    assert result["runs"] == 18 and len(result["tracking_error"]) == 18
    row = result["autoencoderkl_matched_rate"]
    # The default length's row is the committed one (its DVC metric); the replicate adds twice the steps.
    committed = json.loads((ROOT / "paper" / "metrics" / "anisotropy_vgg16_spatial.json").read_text())
    assert row["p_holm"] == pytest.approx(committed["p_holm"], rel=1e-12)
    assert row["verdict"] == committed["verdict"]
    assert row["long_p_holm"] is not None and 0 < row["long_p_holm"] <= 1
    assert {c["claim"] for c in result["cells"]} == {"anisotropy", "anisotropy_long"}
    assert len(list(records.rglob("*.jsonl"))) == 2
    source = json.loads((records / "source.json").read_text())
    assert source["lock"]["stage"] == "spatial" and "--steps 4" in source["command"]
