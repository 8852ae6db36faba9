"""The offline demo end to end, as `make demo` runs it (in a subprocess, with its own Ray and S3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_round_trips_a_table_through_its_own_s3_server(tmp_path: Path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "gadms.demo", f"output_dir={out}", "num_rows=500", "num_blocks=2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    trip = report["parquet_round_trip"]
    assert trip["uri"].startswith("s3://demo/")
    assert (trip["rows_written"], trip["rows_read"], trip["files"], trip["identical"]) == (500, 500, 2, True)
    assert "read 500 back: byte-identical" in result.stdout
    assert (out / "config.yaml").read_text().startswith("output_dir:")
