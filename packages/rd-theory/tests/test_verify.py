from rd_theory import verify


def test_report_is_written_and_all_claims_pass(tmp_path):
    assert verify.main(["--out-dir", str(tmp_path)]) == 0
    table = (tmp_path / "tables" / "theory.md").read_text()
    assert table.count("| pass |") == len(verify.CHECKS)
    assert "FAIL" not in table
    assert (tmp_path / "figures" / "toy_anisotropy.png").stat().st_size > 10_000
    assert "ramping metric" in (tmp_path / "tables" / "toy_anisotropy.md").read_text()

