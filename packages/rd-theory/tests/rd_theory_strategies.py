"""Hypothesis strategies for discrete sources and distortions, edge cases included."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

probabilities = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)


@st.composite
def sources(draw, min_size: int = 2, max_size: int = 6):
    """A distribution with possible zero-probability symbols (at least one positive)."""
    n = draw(st.integers(min_size, max_size))
    p = draw(hnp.arrays(np.float64, n, elements=probabilities))
    p[draw(st.integers(0, n - 1))] += 0.5
    return p / p.sum()


@st.composite
def distortions(draw, n: int, max_cols: int = 6):
    """A nonnegative distortion with ties and repeated columns (rounding to one decimal)."""
    m = draw(st.integers(2, max_cols))
    d = draw(hnp.arrays(np.float64, (n, m), elements=st.floats(0.0, 4.0)))
    return np.round(d, 1)


@st.composite
def problems(draw, max_size: int = 6):
    p = draw(sources(max_size=max_size))
    return p, draw(distortions(p.size))
