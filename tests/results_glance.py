"""The README's "Results at a glance" table, built from the verdicts the pipeline wrote.

Each file of ``paper/metrics/`` is one headline verdict of protocol v3's claims.md summary (one claim,
family and architecture: the stratified Page test over every run, Holm over the rows of one claim, the
effect λ_max vs λ = 0 with its interval), written by the ``aggregate`` stage (`rd_train.protocol.report`).
Nothing in the table is typed by hand: ``.nox/project/bin/python tests/results_glance.py --write`` rewrites
the README's block between its markers, and ``tests/test_readme_results.py`` fails when the block differs
from what the files say.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from rd_train.analysis.trends import format_relative_effect

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results-at-glance:start -->", "<!-- results-at-glance:end -->"
CLAIMS = {"rate": "Rate falls with λ at fixed β", "anisotropy": "Anisotropy falls with λ at matched rate"}
FAMILIES = {"vgg16": "VGG16 (HED)", "patchgan": "PatchGAN"}
ARCHITECTURES = {"vector": "vector VAE", "spatial": "AutoencoderKL"}
NAME = re.compile(r"^(rate|anisotropy)_([a-z0-9]+)_(vector|spatial)\.json$")


def _number(entry: dict[str, object], key: str) -> float:
    value = entry.get(key)
    return float(value) if isinstance(value, float | int) else math.nan


def glance_block(paper: Path = ROOT / "paper") -> str:
    """The markdown table: one row per headline verdict file, in claims.md's order of claims."""
    rows = []
    for path in sorted((paper / "metrics").glob("*.json")):
        match = NAME.match(path.name)
        if match is None or match.group(2) not in FAMILIES:
            raise ValueError(f"{path}: not a verdict file this table knows how to read")
        claim, family, architecture = match.groups()
        entry = json.loads(path.read_text())
        effect = format_relative_effect(_number(entry, "effect"), _number(entry, "effect_low"),
                                        _number(entry, "effect_high"))
        p = _number(entry, "p_holm")
        order = (list(CLAIMS).index(claim), list(FAMILIES).index(family),
                 list(ARCHITECTURES).index(architecture))
        long_p = _number(entry, "p_holm_twice_the_steps")  # the matched-rate claim's second length
        shown_p, shown_long = ("–" if math.isnan(x) else f"{x:.2g}" for x in (p, long_p))
        rows.append((order, f"| {CLAIMS[claim]} | {FAMILIES[family]} | {ARCHITECTURES[architecture]} | "
                            f"**{entry['verdict']}** | {effect} | {shown_p} | {shown_long} | "
                            f"{entry['runs']} |"))
    lines = ["| Claim | Family | Architecture | Verdict | Effect λ max vs 0 [95 % CI] | p (Holm) "
             "| p at 2x steps | Runs |", "|---|---|---|---|---|---:|---:|---:|",
             *(row for _, row in sorted(rows))]
    return "\n".join(lines) + "\n"


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
