"""`python -m gadms.train` end to end on local Ray: S3 in and out, resume after the driver dies,
restart after a worker dies, and the zero-shot evaluation command (`ray job submit` of the job:
tests/test_chain_e2e.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gadms import storage
from gadms.config import load_config
from gadms.train.config import TrainJobConfig
from gadms.train.job import latest_checkpoint, plan_run, run_training
from synth_world import smoke_config, smoke_world  # noqa: F401  (fixtures)
from train_helpers import (
    REPO, SMOKE, kill_group, raylet_pid, smoke_overrides, train_command, train_worker_pids, wait_for,
)

pytestmark = pytest.mark.slow
EPOCHS = 4


def _upload(local: Path, uri: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.write_bytes_atomic(storage.join(uri, str(path.relative_to(local))), path.read_bytes())


def _summary(run_uri: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(run_uri, "summary.json")))


def _steps_logged(run_uri: str) -> list[int]:
    """Steps of the training-loss entries in the history that travels with the checkpoints."""
    history = json.loads(storage.read_bytes(storage.join(latest_checkpoint(run_uri), "history.json")))
    return [int(e["step"]) for e in history if "loss" in e]


def test_s3_run_survives_a_killed_driver_and_its_checkpoint_evaluates(ray_local, s3_bucket, tmp_path, smoke_world):  # noqa: F811
    """Data and checkpoints on S3; SIGKILL the driver after its first checkpoint; the rerun resumes."""
    data = storage.join(s3_bucket, "world")
    _upload(smoke_world / "webperson", storage.join(data, "webperson"))
    _upload(smoke_world / "CUHK-PEDES", storage.join(data, "CUHK-PEDES"))
    overrides = smoke_overrides(data, storage.join(s3_bucket, "runs"), "s3run", f"optim.epochs={EPOCHS}")
    cfg = load_config(TrainJobConfig, SMOKE, overrides)
    plan = plan_run(cfg)
    total = EPOCHS * plan.steps_per_epoch
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}

    first = subprocess.Popen(train_command(overrides), cwd=REPO, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: latest_checkpoint(plan.run_uri) is not None or first.poll() is not None, 300,
                 "a checkpoint on S3")
    finally:
        kill_group(first)
    resume_point = latest_checkpoint(plan.run_uri)
    assert resume_point is not None, first.stdout.read()[-3000:]
    assert not storage.exists(storage.join(plan.run_uri, "summary.json"))  # it really died mid-run

    second = subprocess.run(train_command(overrides), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert f"resuming from {resume_point}" in log, log[-3000:]
    assert "resumed at step" in log
    summary = _summary(plan.run_uri)
    assert summary["steps"] == total and summary["epochs"] == EPOCHS
    assert _steps_logged(plan.run_uri) == sorted(set(_steps_logged(plan.run_uri)))  # no step twice
    assert _steps_logged(plan.run_uri)[-1] == total
    for name in ("curves.png", "summary.json"):
        assert storage.exists(storage.join(plan.run_uri, name))
    assert storage.list_files(storage.join(plan.run_uri, "tensorboard"))

    # The zero-shot evaluation command reproduces the job's test numbers from the S3 checkpoint.
    test = summary["test"]["CUHK-PEDES"]
    evaluated = subprocess.run(
        [sys.executable, "-m", "gadms.evaluate", "--checkpoint", summary["best_checkpoint"],
         "--benchmark", storage.join(data, "CUHK-PEDES"), "--split", "test", "--out", str(tmp_path / "metrics.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())["CUHK-PEDES"]
    for key in ("R1", "mAP", "mINP"):
        assert metrics[key] == pytest.approx(test[key], abs=1e-6)


def test_a_killed_worker_restarts_the_group_from_the_last_checkpoint(ray_local, tmp_path, smoke_world):  # noqa: F811
    overrides = smoke_overrides(smoke_world, str(tmp_path), "workerkill", f"optim.epochs={EPOCHS}", "eval.test_at_end=false")
    cfg = load_config(TrainJobConfig, SMOKE, overrides)
    plan = plan_run(cfg)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_training(cfg, plan)), daemon=True)
    thread.start()
    wait_for(lambda: latest_checkpoint(plan.run_uri) is not None or not thread.is_alive(), 300, "the first checkpoint")
    victims = train_worker_pids(raylet_pid())
    assert len(victims) == cfg.scaling.num_workers, victims
    os.kill(victims[-1], signal.SIGKILL)
    thread.join(timeout=600)
    assert "result" in outcome, "training did not finish after the worker was killed"
    assert set(train_worker_pids(raylet_pid())).isdisjoint(victims)  # a new worker group did the rest
    summary = outcome["result"].summary
    assert summary["steps"] == EPOCHS * plan.steps_per_epoch
    assert _steps_logged(plan.run_uri) == sorted(set(_steps_logged(plan.run_uri)))

    # Rerunning the finished run trains nothing, keeps its history and summary. (This does not guard the
    # loop's final report on such a resume: Ray Train's result already carries the last checkpoint's
    # metrics. That report matters to Tune, whose restored trial otherwise shows no result; only the
    # sweep's kill-and-resume test reaches that case, and only when the kill lands after a last checkpoint.)
    logged = _steps_logged(plan.run_uri)
    again = run_training(cfg, plan_run(cfg)).summary
    assert (again["steps"], again["epochs"]) == (summary["steps"], EPOCHS)
    assert again["val"] == summary["val"]
    assert _steps_logged(plan.run_uri) == logged
