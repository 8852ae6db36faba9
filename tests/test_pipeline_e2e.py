"""End to end: the WebPerson job on the synthetic web corpus served by the misbehaving web server.

Smoke profile: detections from the corpus table, the tiny LLaVA trained on synthetic crops
(`pipelines.dataset.smoke_model`, built once into outputs/models/smoke-vlm), local Ray started by the
job itself. Checks: every row of the corpus ends where the corpus says (kept with its number of
crops, or rejected at the expected stage with the expected reason), the accounting adds up, the
output on S3 reads back with pyarrow, pandas and the training job's reader; a run killed midway and
rerun gives the same data as an uninterrupted run. `ray job submit` of this job against `ray start --head`:
tests/test_chain_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from pipeline_helpers import REPO, SMOKE_MODEL, job_summary, served_corpus
from pipeline_helpers import job_command as base_command
from process_helpers import kill_session

from gadms import storage
from gadms.data.webperson import read_webperson
from gadms.synth.web_corpus import read_web_corpus
from pipelines.dataset.smoke_model import ensure_smoke_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_model() -> Path:
    return ensure_smoke_model(SMOKE_MODEL)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    with served_corpus(tmp_path_factory.mktemp("web")) as folder:
        yield folder


def job_command(web: Path, output: str, model: Path, *extra: str) -> list[str]:
    return base_command("configs/dataset/smoke.yaml", web, output, model, "ray.address=local", *extra)


def run_job(web: Path, output: str, model: Path, *extra: str) -> dict:
    result = subprocess.run(job_command(web, output, model, *extra), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-5000:]
    return job_summary(result.stdout)


def outcome(output: str) -> tuple[dict, dict]:
    """(kept crops by (source_id, crop) -> (image sha, captions), rejects by (id, crop) -> (stage, reason))."""
    data = read_webperson(storage.join(output, "data"))
    kept = {(r["source_id"], r["crop_index"]): (hashlib.sha256(r["image"]).hexdigest(), r["caption1"], r["caption2"])
            for r in data.to_pylist()}  # fmt: skip
    fs, path = storage.resolve(storage.join(output, "rejects"))
    rejects = pds.dataset(path, filesystem=fs, format="parquet").to_table().to_pylist()
    return kept, {(r["id"], r["crop"]): (r["stage"], r["reason"]) for r in rejects}


@pytest.fixture(scope="module")
def s3_run(web, smoke_model, s3_server, tmp_path_factory):
    bucket = f"s3://{s3_server.create_bucket()}"
    output = storage.join(bucket, "webperson")
    started = time.monotonic()
    summary = run_job(web, output, smoke_model)
    return output, summary, time.monotonic() - started


def test_every_corpus_row_ends_where_the_corpus_says(web, s3_run):
    output, summary, _ = s3_run
    records, meta = read_web_corpus(str(web))
    kept, rejects = outcome(output)
    assert summary["complete"] and summary["input_rows"] == len(records) == summary["accounted_rows"]
    crops: dict[str, int] = {}
    for source_id, _ in kept:
        crops[source_id] = crops.get(source_id, 0) + 1
    for record in records:
        rid = str(record["id"])
        if record["expected"] == "kept":
            # every expected crop passed detection and pose; the MLLM stages may still reject some
            crop_rejects = [v for (i, c), v in rejects.items() if i == rid and c is not None]
            assert crops.get(rid, 0) + len(crop_rejects) == record["expected_crops"], record["case"]
            assert (rid, None) not in rejects, (record["case"], rejects.get((rid, None)))
        else:
            assert rejects.get((rid, None)) == (record["expected_stage"], record["expected_reason"]), record["case"]
            assert rid not in crops
    assert summary["kept_rows"] >= meta["kept"] * 0.6, "the smoke MLLM should keep most crops"
    stats = json.loads(storage.read_bytes(storage.join(output, "stats.json")))
    stages = {s["stage"]: s for s in stats["stages"]}
    assert stages["input"]["in"] == len(records)
    for before, after in zip(stats["stages"], stats["stages"][1:]):
        if before["level"] == after["level"]:
            assert before["out"] == after["in"]
        assert before["in"] - before["out"] == sum(before["rejected"].values())
    assert stages["mllm_filter"]["in"] == stats["crops"] == stats["kept_crops"] + stats["rejected_crops"]
    report = storage.read_bytes(storage.join(output, "report.html")).decode()
    assert "data:image/jpeg;base64," in report and "Yield per stage" in report
    assert "AWS_SECRET" not in report and os.environ["AWS_SECRET_ACCESS_KEY"] not in report


def test_output_reads_back_with_common_parquet_readers(s3_run):
    output, summary, _ = s3_run
    import pandas as pd

    table = read_webperson(storage.join(output, "data"))
    assert table.num_rows == summary["kept_crops"] and set(table.column("caption1").to_pylist()) - {""}
    frame = pd.read_parquet(storage.join(output, "data"),  # pandas + s3fs, as `datasets` and most tools read
                            storage_options={"client_kwargs": {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}})  # fmt: skip
    assert list(frame.columns[:4]) == ["image", "image_path", "caption1", "caption2"] and len(frame) == table.num_rows


def test_the_training_job_reads_the_output_unchanged(s3_run):
    output, summary, _ = s3_run
    train_data = pytest.importorskip("gadms.train.data", reason="the training job (gadms.train) is not in this checkout")
    from gadms.train.config import DataConfig

    source = train_data.describe_source(DataConfig(source="webperson", uri=storage.join(output, "data")))
    assert source.samples == 2 * summary["kept_crops"]  # the training job reads it unchanged


def test_a_killed_run_resumes_to_the_same_data(web, smoke_model, s3_run, tmp_path):
    reference = outcome(s3_run[0])
    output = str(tmp_path / "resumed")
    process = subprocess.Popen(job_command(web, output, smoke_model), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    commits = Path(output) / "_commits"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if commits.is_dir() and any(commits.glob("*.json")):
            break
        time.sleep(0.1)
    assert process.poll() is None, "the job finished before it could be killed"
    kill_session(process)  # the driver and its local Ray, mid-run
    killed_markers = len(list(commits.glob("*.json")))
    assert not (Path(output) / "stats.json").exists()
    summary = run_job(web, output, smoke_model)
    assert summary["complete"]
    assert outcome(output) == reference
    stats = json.loads((Path(output) / "stats.json").read_text())
    assert len(stats["runs"]) == 1 and killed_markers >= 1
    for shard in (Path(output) / "data").glob("*.parquet"):
        pq.read_table(shard)  # every visible file is whole
