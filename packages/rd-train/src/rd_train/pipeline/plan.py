r"""How long the training stages of a params file take on this machine, predicted before they run.

The runs are listed by the functions the stages call (`rd_train.params.Params.run_configs` for the DVC
stages fixed, geco, length and control; `Params.spatial_params` then `run_configs` for spatial), in the
blocks a stage trains one after another (one (sweep, family) each) and in the order a block submits them
to its ``jobs`` workers.

A run's time is close to a + b·steps: a is what it costs whatever its length (process and data set-up,
the model and the frozen weights, the final evaluation), b a training step with its share of the
validations (their cadence is fixed in steps) and of the checkpoints. What a step computes depends on
the model, the family (pixel SSE alone, VGG16 (HED) features, a PatchGAN), the data and batch and the rate
controller (GECO reads a held-out batch at every step, and validates at its own schedule from the
corrections' start on: training/cadence.py), not on λ, β, the target or the seed; so one run per (model,
family, controller) is timed, trained here for two short lengths as a sweep trains it (``workers``
copies side by side, one thread each when the cores are shared as in a sweep, output to a log), and a
and b are the line through the two mean times.
Lengths default to 10 % and 30 % of the params' steps, so that both include validations and a
PatchGAN's discriminator switched on at its start step (``loss.disc_start_step`` below 10 %).

A block's time is its runs assigned in order to the first free worker (what the sweep's process pool
does); a stage's, the sum over its blocks. The stages outside training (analysis, diffusability,
aggregate, theory) are not predicted: the README gives their measured times.
"""

from __future__ import annotations

import contextlib
import heapq
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_train.config import TrainConfig, from_dict
from rd_train.errors import ParamsError

if TYPE_CHECKING:
    from rd_train.params import Params


# (model, family, rate controller): what one calibration times (module doc), "vector/pixel/geco" in JSON.
CostKey = tuple[str, str, str]


@dataclass(frozen=True)
class Block:
    """The runs one stage trains together: one (sweep, family), in submission order."""

    stage: str
    sweep: str
    family: str
    model: str  # "vector" or "spatial"
    configs: tuple[TrainConfig, ...]

    @property
    def cost_key(self) -> CostKey:
        """What a run's cost depends on (module doc): its model, family and rate controller. A block
        without runs (a grid with no β, say) has no controller, and needs no cost."""
        return self.model, self.family, self.configs[0].rate.mode


@dataclass(frozen=True)
class RunCost:
    """seconds(steps) = fixed + per_step · steps, from two timed lengths."""

    fixed: float
    per_step: float
    lengths: tuple[int, int]
    seconds: tuple[float, float]  # mean wall time of the copies at each length

    def seconds_for(self, steps: int) -> float:
        return max(0.0, self.fixed + self.per_step * steps)

    @classmethod
    def through(cls, lengths: tuple[int, int], seconds: tuple[float, float]) -> RunCost:
        (n1, n2), (t1, t2) = lengths, seconds
        if n2 <= n1:
            raise ValueError(f"calibration lengths must increase, got {lengths}")
        # A run cannot take less time for more steps: when timing noise makes the longer calibration run
        # the faster one, the per-step cost is 0 and the fixed cost their mean, not a negative slope that
        # extrapolates to no time at all (the line otherwise passes through both points, as before).
        per_step = max(0.0, (t2 - t1) / (n2 - n1))
        return cls((t1 + t2) / 2 - per_step * (n1 + n2) / 2, per_step, lengths, seconds)


def planned_blocks(params: Params) -> list[Block]:
    """Every block the training stages of ``params`` train, in DVC's stage order (fixed, geco, length,
    control, spatial) and each stage's family order (dvc.yaml: pixel first, then the losses' families)."""
    stages = [(params, "runs", "vector")]
    if params.spatial is not None:
        stages.append((params.spatial_params(), "runs/spatial", "spatial"))
    return [Block("spatial" if model == "spatial" else sweep, sweep, family, model,
                  tuple(source.run_configs(sweep, family, out)))
            for source, out, model in stages for sweep, family in source.blocks]


def list_schedule(durations: Sequence[float], workers: int) -> float:
    """The span of ``durations`` given in order to the first free of ``workers`` workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    free_at = [0.0] * min(workers, max(1, len(durations)))
    for seconds in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return max(free_at) if durations else 0.0


def default_lengths(steps: int) -> tuple[int, int]:
    return max(2, round(0.1 * steps)), max(4, round(0.3 * steps))


# Times `copies` fits of one config at one length, side by side; returns their wall seconds.
FitTimer = Callable[[TrainConfig, int, int, Path], list[float]]


class PooledFits:
    """The timed fits of one calibration in one process pool, with the sweep's thread plan (workers.py) and
    the sweep's own worker function: a sweep's workers also live from run to run, so a worker's imports and
    first-use costs are paid once, not per fit. Called as a `FitTimer`: ``copies`` fits of ``config`` cut
    to ``steps`` steps at once, each in its own directory and log; the wall seconds of each fit. `warm`
    first fits a config untimed in every worker, so a timed fit pays no first-use cost of its family."""

    def __init__(self, copies: int) -> None:
        from rd_train.pipeline.workers import plan_workers

        self.plan = plan_workers(copies)
        self._stack = contextlib.ExitStack()
        self._pool: Any = None

    def __enter__(self) -> PooledFits:
        from rd_train.pipeline.workers import worker_pool

        self._pool = self._stack.enter_context(worker_pool(self.plan))  # as a sweep's, stop flags aside
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, config: TrainConfig, steps: int, copies: int, scratch: Path) -> list[float]:
        from rd_train.pipeline.sweep import fit_quietly

        base = config.to_dict()
        optim = {**base["optim"], "max_steps": steps}
        configs = [from_dict({**base, "out_dir": str(scratch / f"{steps}-{i}"), "optim": optim})
                   for i in range(self.plan.workers)]
        return [seconds for _, _, seconds, _ in self._pool.map(fit_quietly, configs)]

    def warm(self, config: TrainConfig, scratch: Path) -> None:
        self(config, 2, self.plan.workers, scratch / "warm-up")


def calibrate(blocks: Sequence[Block], workers: int, lengths: tuple[int, int] | None = None,
              timer: FitTimer | None = None, report: Callable[[str], None] = print,
              known: dict[CostKey, RunCost] | None = None) -> dict[CostKey, RunCost]:
    """One `RunCost` per (model, family, rate controller) of ``blocks``, from its first block's first run;
    those in ``known`` (an earlier calibration on this machine, `read_costs`) are not timed again.
    ``timer`` (default: real fits in one `PooledFits`) times a fit."""
    if timer is None:
        with PooledFits(workers) as pooled:
            return calibrate(blocks, workers, lengths, pooled, report, known)
    costs: dict[CostKey, RunCost] = dict(known or {})
    with tempfile.TemporaryDirectory(prefix="rd-train-plan-") as scratch:
        for block in blocks:
            if not block.configs or block.cost_key in costs:
                continue
            config = block.configs[0]
            chosen = lengths or default_lengths(config.optim.max_steps)
            where = Path(scratch) / "-".join(block.cost_key)
            start = time.perf_counter()
            if isinstance(timer, PooledFits):
                timer.warm(config, where)
            means = [statistics.fmean(timer(config, steps, workers, where)) for steps in chosen]
            costs[block.cost_key] = RunCost.through(chosen, (means[0], means[1]))
            report(f"[plan] timed {cost_key_name(block.cost_key)} at {chosen[0]} and {chosen[1]} steps "
                   f"({time.perf_counter() - start:.0f} s)")
    return costs


def cost_key_name(key: CostKey) -> str:
    return "/".join(key)


def plan_to_json(params: Params, plans: Sequence[BlockPlan], costs: dict[CostKey, RunCost],
                 workers: int) -> dict[str, Any]:
    """What ``rd-train plan --json`` writes, and `read_costs` reads back (its workers and costs)."""
    return {
        "params": params.source, "workers": workers,
        "costs": {cost_key_name(k): {"fixed_s": c.fixed, "per_step_s": c.per_step, "lengths": list(c.lengths),
                                     "seconds": list(c.seconds)} for k, c in costs.items()},
        "blocks": [{"stage": p.block.stage, "block": f"{p.block.sweep}/{p.block.family}",
                    "model": p.block.model, "runs": len(p.block.configs),
                    "seconds_per_run": p.seconds_per_run, "seconds": p.seconds} for p in plans],
        "training_seconds": sum(p.seconds for p in plans),
    }


def read_costs(path: str | Path, workers: int) -> dict[CostKey, RunCost]:
    """The costs an earlier ``rd-train plan --json`` measured, if it was for the same workers."""
    import json

    try:
        saved = json.loads(Path(path).read_text())
        timed_with = int(saved["workers"])
        costs = {_key(name): RunCost(float(v["fixed_s"]), float(v["per_step_s"]),
                                     (int(v["lengths"][0]), int(v["lengths"][1])),
                                     (float(v["seconds"][0]), float(v["seconds"][1])))
                 for name, v in saved["costs"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise ParamsError(f"--costs {path}: not the JSON of `rd-train plan --json` ({error!r}); "
                          "time again without --costs") from None
    if timed_with != workers:
        raise ParamsError(f"--costs {path} was timed with {timed_with} worker(s), this plan has {workers}: "
                          "time again without --costs, or give the same --jobs")
    return costs


def _key(name: str) -> CostKey:
    model, family, controller = name.split("/")  # a name of another form is not this plan's: ValueError
    return model, family, controller


@dataclass(frozen=True)
class BlockPlan:
    block: Block
    seconds_per_run: float
    seconds: float  # the block's span on the workers


def predict(blocks: Sequence[Block], costs: dict[CostKey, RunCost], workers: int) -> list[BlockPlan]:
    plans = []
    for block in blocks:
        durations = [costs[block.cost_key].seconds_for(c.optim.max_steps) for c in block.configs]
        per_run = statistics.fmean(durations) if durations else 0.0
        plans.append(BlockPlan(block, per_run, list_schedule(durations, workers)))
    return plans


def format_plan(plans: Sequence[BlockPlan], workers: int) -> str:
    from rd_train.pipeline.progress import duration

    rows = [f"{'stage':<9}{'block':<26}{'model':<9}{'runs':>5}{'steps':>7}{'per run':>10}{'predicted':>11}"]
    totals: dict[str, float] = {}
    for p in plans:
        b = p.block
        steps = b.configs[0].optim.max_steps if b.configs else 0
        rows.append(f"{b.stage:<9}{b.sweep + '/' + b.family:<26}{b.model:<9}{len(b.configs):>5}{steps:>7}"
                    f"{duration(p.seconds_per_run):>10}{duration(p.seconds):>11}")
        totals[b.stage] = totals.get(b.stage, 0.0) + p.seconds
    runs = sum(len(p.block.configs) for p in plans)
    rows.append("")
    rows += [f"{stage:<9}{duration(seconds):>11}" for stage, seconds in totals.items()]
    rows.append(f"{'training':<9}{duration(sum(totals.values())):>11}  ({runs} runs, {workers} worker(s))")
    return "\n".join(rows)


def plan_params(params: Params, jobs: int | None = None, lengths: tuple[int, int] | None = None,
                timer: FitTimer | None = None, costs_path: str | Path | None = None
                ) -> tuple[list[BlockPlan], dict[CostKey, RunCost], int]:
    """Blocks of the params with their predicted times, the run costs and the workers."""
    from rd_train.pipeline.workers import plan_workers

    blocks = planned_blocks(params)
    requested = jobs if jobs is not None else params.jobs
    if requested < 1:
        raise ParamsError(f"--jobs must be >= 1, got {requested}")
    if lengths is not None and not 0 < lengths[0] < lengths[1]:
        raise ParamsError(f"--lengths must be two increasing positive step counts, got {list(lengths)}")
    workers = plan_workers(requested).workers
    known = read_costs(costs_path, workers) if costs_path is not None else None
    costs = calibrate(blocks, workers, lengths, timer, known=known)
    return predict(blocks, costs, workers), costs, workers
