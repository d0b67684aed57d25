import pytest
from rd_theory import verify


# Slow (the whole verification, 17 s alone): its fast twin is tests/test_pipeline.py's check of the
# `theory` stage's report, which the miniature `dvc repro` writes with the same command (params added).
@pytest.mark.slow
def test_report_is_written_and_all_claims_pass(tmp_path):
    assert verify.main(["--out-dir", str(tmp_path)]) == 0
    table = (tmp_path / "tables" / "theory.md").read_text()
    assert table.count("| pass |") == len(verify.VERIFIED)
    assert "FAIL" not in table
    assert (tmp_path / "figures" / "toy_anisotropy.png").stat().st_size > 10_000
    toy_table = (tmp_path / "tables" / "toy_anisotropy.md").read_text()
    published_beside_reproduced = "| 17.26 | 17.2645 | 17.25 | 17.2452 | 0.6486 | 0.648579 |"
    assert f"| Perceptual metric (ramping metric) {published_beside_reproduced}" in toy_table
    assert "5 of 5 numbers reproduce" in toy_table

