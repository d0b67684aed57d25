"""The README's "Results at a glance" table, built from the verdicts the pipeline wrote.

Each file of ``paper/metrics/`` (vector VAE) and ``paper/spatial_metrics/`` (AutoencoderKL) is one
cell of one claim (a β, or a rate target and an estimator), written by the `aggregate` and
`spatial_report` stages. The table groups them by claim, family and architecture and says, for each
group, how many cells reached each verdict, with the effect of every cell that has one. Nothing in it
is typed by hand: ``.nox/project/bin/python tests/results_glance.py --write`` rewrites the README's
block between its markers, and ``tests/test_readme_results.py`` fails when the block differs from
what the files say.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from rd_train.analysis.trends import format_relative_effect

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results-at-glance:start -->", "<!-- results-at-glance:end -->"
ARCHITECTURES = (("metrics", "vector VAE"), ("spatial_metrics", "AutoencoderKL"))
FAMILIES = {"perceptual": "VGG16 (HED)", "adversarial": "PatchGAN"}
CLAIMS = (
    ("rate", "", "Rate falls with λ at fixed β"),
    ("anisotropy", "geco", "Anisotropy falls with λ at matched rate (GECO runs)"),
    ("anisotropy", "interpolated",
     "Anisotropy falls with λ at matched rate (fixed-β curves read at the target)"),
)
NAME = re.compile(r"^(rate|anisotropy)_([a-z]+)_(beta[\d.]+|[\d.]+nats)(?:_([a-z]+))?\.json$")


def _cell(cell: str) -> tuple[float, str]:
    if cell.startswith("beta"):
        return float(cell[4:]), f"β {cell[4:]}"
    return float(cell[:-4]), f"{cell[:-4]} nats"


def _effect(entry: dict[str, object]) -> str:
    """The cell's effect as claims.md writes it (`format_relative_effect`), and its p-value."""
    def number(key: str) -> float:
        value = entry.get(key)
        return float(value) if isinstance(value, float | int) else math.nan

    if math.isnan(number("effect")):
        return ""
    text = format_relative_effect(number("effect"), number("effect_low"), number("effect_high"))
    p = number("p_value")
    return text if math.isnan(p) else f"{text}, p {p:.2g}"


def _cells(line: str) -> list[str]:
    """The cells of one markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def glance_table(paper: Path = ROOT / "paper") -> str:
    """The markdown table: one row per (claim, family, architecture) that has verdict files."""
    groups: dict[tuple[int, str, str], list[tuple[float, str, dict[str, object]]]] = defaultdict(list)
    for folder, architecture in ARCHITECTURES:
        for path in sorted((paper / folder).glob("*.json")):
            match = NAME.match(path.name)
            if match is None:
                raise ValueError(f"{path}: not a verdict file this table knows how to read")
            quantity, family, cell, estimator = match.groups()
            claim = next(i for i, (q, e, _) in enumerate(CLAIMS) if q == quantity and e == (estimator or ""))
            order, label = _cell(cell)
            groups[(claim, FAMILIES[family], architecture)].append(
                (order, label, json.loads(path.read_text())))
    lines = ["| Claim | Family | Architecture | Verdicts over the cells | Effect λ max vs 0 [95 % CI], p |",
             "|---|---|---|---|---|"]
    for (claim, family, architecture), cells in sorted(groups.items(), key=lambda kv: (
            kv[0][0], list(FAMILIES.values()).index(kv[0][1]), kv[0][2] != "vector VAE")):
        cells.sort(key=lambda c: c[0])
        counts = Counter(str(entry["verdict"]) for _, _, entry in cells)
        verdicts = "; ".join(f"{verdict}: {n} of {len(cells)}" for verdict, n in counts.most_common())
        effects = "; ".join(f"{label}: {text}" for _, label, entry in cells if (text := _effect(entry)))
        lines.append(f"| {CLAIMS[claim][2]} | {family} | {architecture} | {verdicts} | {effects or '–'} |")
    return "\n".join(lines) + "\n"


REPORTS = (("tables", "vector VAE"), ("spatial", "AutoencoderKL"))  # claims.md and runs.csv of each
ANISOTROPY_CORRECTED = "Anisotropy falls with λ at matched rate (GECO, corrected to the target)"
FAMILY_LABELS = {"VGG16 (HED) features": "VGG16 (HED)", "PatchGAN (hinge + feature matching)": "PatchGAN"}


def _no_filter_page_rows(claims: str) -> list[list[str]]:
    """The rows of claims.md's paired Page table over every run (section "Paired analyses")."""
    section = claims.split("## Paired analyses", 1)[1].split("### Every run, no filter", 1)[1]
    rows = []
    for line in section.split("\n\n", 2)[1].splitlines():
        cells = _cells(line)
        if len(cells) == 7 and cells[0] in ("rate", "anisotropy"):
            rows.append(cells)
    return rows


ESTIMATES = {"rate": "fixed β", "anisotropy": "GECO, corrected to the target"}  # what Page's test reads


def _no_filter_effects(claims: str) -> dict[tuple[str, str], list[str]]:
    """(claim, family) -> "cell: effect [Fieller CI]" from the trend section's every-run tables, for the
    estimate the paired Page test reads."""
    section = claims.split("## Trend over the λ grid", 1)[1].split("## Paired analyses", 1)[0]
    effects: dict[tuple[str, str], list[str]] = defaultdict(list)
    every_run = False
    for line in section.splitlines():
        if line.startswith(("### Converged runs", "Converged runs")):
            every_run = False
        elif line.startswith(("### Every run", "Every run")):
            every_run = True
        cells = _cells(line)
        if every_run and len(cells) == 10 and cells[0] in ESTIMATES and cells[3] == ESTIMATES[cells[0]]:
            unit = f"β {cells[2]}" if cells[0] == "rate" else f"{cells[2]} nats"
            effects[(cells[0], FAMILY_LABELS[cells[1]])].append(f"{unit}: {cells[5]}")
    return effects


def no_filter_table(paper: Path = ROOT / "paper") -> str:
    """Per (claim, family, architecture): the cells whose paired Page test over every run falls, and
    how many runs the filtered verdicts above kept."""
    lines = ["| Claim | Family | Architecture | Cells that fall with λ (Page, Holm) | "
             "Effect λ max vs 0 [Fieller CI] |", "|---|---|---|---|---|"]
    kept = []
    for folder, architecture in REPORTS:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        claims = (paper / folder / "claims.md").read_text()
        effects = _no_filter_effects(claims)
        for claim, family, *_, verdict in _no_filter_page_rows(claims):
            groups[(claim, FAMILY_LABELS[family])].append(verdict.strip("*"))
        for (claim, family), verdicts in groups.items():
            label = CLAIMS[0][2] if claim == "rate" else ANISOTROPY_CORRECTED
            falls = sum(v == "falls with λ" for v in verdicts)
            effect = "; ".join(effects.get((claim, family), [])) or "–"
            lines.append(f"| {label} | {family} | {architecture} | {falls} of {len(verdicts)} | {effect} |")
        with (paper / folder / "runs.csv").open() as runs:
            converged = [row["converged"] == "1" for row in csv.DictReader(runs)]
        kept.append(f"{sum(converged)} of {len(converged)} runs ({architecture})")
    return ("\n".join(lines) + "\n\nThe filtered verdicts of the first table keep the runs that passed the "
            f"convergence rules: {', '.join(kept)}.\n")


def glance_block(paper: Path = ROOT / "paper") -> str:
    """What the README shows between its markers."""
    return (glance_table(paper) + "\nThe same claims over every run, no filter (claims.md, \"Paired "
            "analyses\": a seed fixes the initialisation, noise and batch order at every λ):\n\n"
            + no_filter_table(paper))


def readme_block(readme: str) -> str:
    """The text between the README's markers."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md has no {START} ... {END} block")
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's block")
    args = parser.parse_args(argv)
    table = glance_block()
    if args.write:
        path = ROOT / "README.md"
        text = path.read_text()
        before, rest = text.split(START, 1)
        path.write_text(f"{before}{START}\n{table}{END}{rest.split(END, 1)[1]}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
