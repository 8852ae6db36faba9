"""The whole chain as a user runs it on a cluster: `ray start --head` on loopback, then the README's three
commands with `ray job submit`, each reading what the previous one wrote, everything on the local S3 server.

1. the dataset job on the synthetic web corpus (served by the misbehaving HTTP server) -> s3://.../webperson;
2. the training job (smoke recipe) on that Parquet, checkpoints to s3://.../runs, tested on a synthetic
   CUHK-PEDES that also lives on S3;
3. the sweep (smoke sweep, one trial: tests/test_tune_sweep.py runs three) on the same data, experiment and
   report on S3.
The MLLM filter and captioner are switched off in step 1 (tests/test_pipeline_e2e.py runs them): this
test is about submission and the hand-over between jobs, and their start-up costs a minute on 2 cores.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pipeline_helpers import REPO, job_summary, served_corpus

from gadms import storage
from gadms.config import load_config
from gadms.synth.config import load_synth_config
from gadms.synth.generate import generate_world
from gadms.testing.ray_cluster import LocalRayCluster
from gadms.train.config import TrainJobConfig

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
RUNTIME_ENV = json.dumps({"excludes": ["/.venv*", "/outputs", "/.git"]})
BATCH = 16  # the smoke corpus keeps a few dozen crops: two captions each, so a few steps per epoch


def submit(cluster: LocalRayCluster, *command: str, timeout: float = 600) -> str:
    """`ray job submit --working-dir <repo> -- <command>`: waits, returns the job's output, fails on failure."""
    ray = str(Path(sys.executable).parent / "ray")
    result = subprocess.run(
        [ray, "job", "submit", "--working-dir", str(REPO), "--runtime-env-json", RUNTIME_ENV, "--", *command],
        env=cluster.env(), cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def chain(ray_cluster, s3_server, tmp_path_factory):
    bucket = f"s3://{s3_server.create_bucket()}"
    world = storage.join(bucket, "world")
    parts_off = [f"{part}.enabled=false" for part in ("icfg", "rstp", "webperson", "web", "contact_sheet")]
    generate_world(load_synth_config("smoke", overrides=parts_off), world)
    webperson = storage.join(bucket, "webperson")
    with served_corpus(tmp_path_factory.mktemp("web")) as web:
        dataset_out = submit(
            ray_cluster, "python", "pipelines/build_dataset.py", "--config", "configs/dataset/smoke.yaml",
            f"input={web / 'corpus.parquet'}", f"output={webperson}", "filter.enabled=false", "caption.enabled=false",
        )
    data = storage.join(webperson, "data")
    train = [f"data.uri={data}", f"eval.benchmarks=[{storage.join(world, 'CUHK-PEDES')}]", f"global_batch_size={BATCH}"]
    train_out = submit(ray_cluster, "python", "-m", "gadms.train", "--config", "configs/train/smoke.yaml", *train,
                       f"run.storage_path={storage.join(bucket, 'runs')}", "run.name=chain")  # fmt: skip
    sweep_out = submit(
        ray_cluster, "python", "tune/sweep_masking.py", "--config", "configs/tune/smoke.yaml",
        f"storage_path={storage.join(bucket, 'sweeps')}", f"train.overrides={json.dumps(train)}", "num_samples=1",
    )
    return {"bucket": bucket, "data": data, "dataset": job_summary(dataset_out), "train_out": train_out,
            "sweep_out": sweep_out}  # fmt: skip


def read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri))


def test_the_dataset_job_accounts_for_every_row_and_its_output_is_on_s3(chain):
    stats = chain["dataset"]
    assert stats["complete"] and stats["accounted_rows"] == stats["input_rows"] > 0
    assert stats["kept_rows"] + stats["rejected_rows"] == stats["input_rows"]
    rows = sum(pq.ParquetFile(io.BytesIO(storage.read_bytes(f))).metadata.num_rows
               for f in storage.list_files(chain["data"], suffix=".parquet"))  # fmt: skip
    assert rows == stats["kept_crops"] > BATCH // 2


def test_the_training_job_trained_on_exactly_that_output(chain):
    runs = storage.join(chain["bucket"], "runs", "chain")
    summary = read_json(storage.join(runs, "summary.json"))
    recipe = load_config(TrainJobConfig, REPO / "configs/train/smoke.yaml")
    samples = 2 * chain["dataset"]["kept_crops"]  # two captions per kept crop
    assert summary["steps"] == recipe.optim.epochs * (samples // BATCH)
    assert f"{samples} samples/epoch" in chain["train_out"]
    test = summary["test"]["CUHK-PEDES"]
    assert 0 <= test["R1"] <= 100 and test["chance"]["R1"] > 0
    assert summary["model"] == storage.join(runs, "model.pt") and storage.exists(summary["model"])
    assert summary["best_checkpoint"].startswith(runs + "/step-")


def test_the_sweep_ran_its_trials_on_that_output_and_wrote_its_report(chain):
    report = storage.join(chain["bucket"], "sweeps", "smoke", "report")
    rows = list(csv.DictReader(io.StringIO(storage.read_bytes(storage.join(report, "results.csv")).decode())))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_mAP"]) <= 100
    best = yaml.safe_load(storage.read_bytes(storage.join(report, "best.yaml")))
    assert best["data"]["uri"] == chain["data"]
    assert best["model"]["masking"]["alpha_noise"] == pytest.approx(float(rows[0]["alpha_n"]))
    assert "best.yaml" in chain["sweep_out"]
