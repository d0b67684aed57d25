"""The summary's verdict rule: one rule for every row; the matched-rate claim holds only at both lengths."""

import math

from rd_train.protocol.paired import paired_log_ratio
from rd_train.protocol.summary import NOT_RESOLVED, HeadlineRow, summary_table, verdict


def test_verdict_rule():
    assert verdict(0.01, 0.05) == "holds"
    assert verdict(0.05, 0.05) == NOT_RESOLVED  # p must be below α
    assert verdict(0.2, 0.05, long_p_holm=0.001) == NOT_RESOLVED
    assert verdict(0.01, 0.05, long_p_holm=0.04) == "holds at both lengths"
    assert verdict(0.01, 0.05, long_p_holm=0.06).startswith("not shown")
    assert verdict(0.01, 0.05, long_p_holm=math.nan).startswith("not shown")  # untested is not shown
    assert verdict(math.nan, 0.05) == "not testable"


def test_summary_rows_carry_effect_interval_and_both_p_values():
    effect = paired_log_ratio([2.0, 2.2, 1.8], [4.0, 4.0, 4.0])
    rows = [HeadlineRow("anisotropy falls with λ at matched rate", "VGG16 (HED)", "vector VAE", effect, 0.001,
                        54, long_p_holm=0.2),
            HeadlineRow("rate falls with λ at fixed β", "PatchGAN", "vector VAE", effect, 0.3, 33)]
    lines = summary_table(rows, 0.05)
    assert lines[0].startswith("| claim | family | architecture | verdict")
    assert "**not shown: holds at the default length, not at 2x steps**" in lines[2]
    assert "| 0.001 | 0.2 | 54 |" in lines[2]
    assert f"**{NOT_RESOLVED}**" in lines[3] and "| 0.3 | – | 33 |" in lines[3]
    interval = f"{effect.effect:+.1%} [{effect.low:+.1%}, {effect.high:+.1%}]"  # the geometric-mean change
    assert interval in lines[2]
