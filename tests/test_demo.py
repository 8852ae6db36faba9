"""The offline demo end to end, as `make demo` runs it (in a subprocess, with its own Ray and S3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_generates_a_world_and_streams_it_back_from_its_own_s3_server(tmp_path: Path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "gadms.demo", f"output_dir={out}", "world_size=smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    streamed = report["webperson_stream"]
    webperson = next(d for d in report["world"]["datasets"] if d["name"] == "WebPerson")
    assert streamed["uri"] == "s3://demo/webperson"
    assert streamed["identical"] is True
    assert streamed["rows"] == webperson["splits"]["train"]["images"] > 0
    cuhk = next(d for d in report["world"]["datasets"] if d["name"] == "CUHK-PEDES")
    # The reader's view of the benchmark equals what the generator says it wrote.
    assert report["benchmarks"]["CUHK-PEDES"] == {
        split: [s["ids"], s["images"], s["captions"]] for split, s in cuhk["splits"].items()
    }
    assert (out / "world" / "contact_sheet.png").stat().st_size > 10_000
    assert "identical to what was written" in result.stdout
