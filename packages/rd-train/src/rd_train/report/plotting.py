"""The one way figures are drawn and written: matplotlib without a display, PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rd_theory.atomic import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (stages run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """``fig`` as a PNG at ``path`` (write-then-rename: a kill never leaves half a figure), then closed."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    pyplot().close(fig)
    return path


def panels(n: int, width: float = 5.2, height: float = 4.3) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels side by side (at least one)."""
    n = max(n, 1)
    fig, axes = pyplot().subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])
