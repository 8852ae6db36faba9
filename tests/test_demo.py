"""The offline demo end to end, as `make demo` runs it (a subprocess with its own Ray and S3 server), on the
smoke world with one epoch per training run and a one-trial sweep so that it fits in CI. The demo-size
run and its timing are in the README."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ONE_TRIAL = {"model.masking.alpha_noise": {"type": "grid", "values": [0.1]},
             "model.masking.alpha_info": {"type": "grid", "values": [0.4]}}  # fmt: skip
TRIAL = ["optim.epochs=1", "optim.warmup_epochs=0", "data.max_rows=64", "data.preprocess_cpus=0.25",
         "run.log_every_steps=1000", "run.num_to_keep=1"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_runs_the_whole_chain_and_reports_it(tmp_path: Path):
    out = tmp_path / "demo"
    overrides = [
        f"output_dir={out}", "world_size=smoke",
        f"train_overrides={json.dumps(['optim.epochs=1', 'optim.warmup_epochs=0', 'global_batch_size=32'])}",
        f"sweep_overrides={json.dumps([f'space={json.dumps(ONE_TRIAL)}', f'train.trial_overrides={json.dumps(TRIAL)}'])}",
    ]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "gadms.demo", *overrides], cwd=REPO, capture_output=True,
                            text=True, timeout=1100)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())

    dataset = report["dataset"]
    assert dataset["complete"] and dataset["kept_rows"] + dataset["rejected_rows"] == dataset["input_rows"] > 0
    for level in ("row", "crop"):  # every stage hands on what it did not reject
        stages = [s for s in dataset["stages"] if s["level"] == level]
        assert all(a["out"] == b["in"] for a, b in zip(stages, stages[1:]))
        assert all(s["in"] - s["out"] == sum(s["rejected"].values()) for s in stages)

    webperson = next(d for d in report["world"]["datasets"] if d["name"] == "WebPerson")
    steps = 2 * webperson["splits"]["train"]["images"] // 32  # one epoch, both captions, batch 32
    for run in (report["stand_in"], report["gadms"]):
        assert run["steps"] == steps
        assert set(run["test"]) == {"CUHK-PEDES", "RSTPReid", "ICFG-PEDES"}
        assert all(0 < m["chance"]["R1"] <= 100 and 0 <= m["R1"] <= 100 for m in run["test"].values())
    assert (report["stand_in"]["objective"], report["gadms"]["objective"]) == ("clip", "gadms")
    assert report["sweep"]["trials"] == 1
    assert float(report["sweep"]["best"]["alpha_n"]) == pytest.approx(0.1)

    # The summary names every report, and each one is on disk (the S3 bucket was copied out before its
    # server stopped).
    listed = dict(re.findall(r"^\[demo\]   - ([^:]+): (\S+)$", result.stdout, flags=re.M))
    assert {"dataset stats", "GA-DMS summary", "sweep results.csv", "demo report"} <= set(listed)
    assert all(Path(p).is_file() for p in listed.values()), listed
    assert json.loads(Path(listed["GA-DMS summary"]).read_text())["steps"] == steps
    assert re.search(r"GA-DMS|gadms", result.stdout) and "x chance" in result.stdout
