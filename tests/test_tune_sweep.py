"""`python tune/sweep_masking.py`: search-space checks (fast, no Ray) and the smoke sweep end to end
(killed midway, resumed by rerunning the command, then its report checked against its trials)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from process_helpers import kill_session
from synth_world import smoke_config, smoke_world  # noqa: F401  (fixtures)

from gadms.config import load_config
from gadms.errors import UserError
from gadms.sweep.config import SweepConfig
from gadms.sweep.job import check_same_experiment, concurrency, plan_sweep, trial_scheduler
from gadms.sweep.report import collect_rows
from gadms.train.config import TrainJobConfig
from gadms.train.loop import SCORE_KEY

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs/tune/smoke.yaml"


def sweep_overrides(world: Path | str, storage: Path | str, *extra: str) -> list[str]:
    train = [f"data.uri={world}/webperson", f"eval.benchmarks=[{world}/CUHK-PEDES]", "global_batch_size=32"]
    return [f"storage_path={storage}", f"train.overrides={json.dumps(train)}", *extra]


def plan(*overrides: str):
    return plan_sweep(load_config(SweepConfig, SMOKE, overrides))


# --- the search space is checked before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("space.model.masking.alpha_nois=uniform", "unknown knob 'model.masking.alpha_nois'"),
        ("space.model.masking.alpha_noise.low=0.4", "empty range: low (0.4) must be below high (0.4)"),
        ("space.model.masking.alpha_noise.high=1.5", "alpha_n = 1.5 is outside [0, 1]"),
        ("space.model.masking.alpha_info={type: grid, values: [0.2, -0.1]}", "alpha_i = -0.1 is outside"),
        ("space.model.loss.mtp_weight.values=[]", "empty choice"),
        ("space.model.scoring.layers={type: uniform, low: 2, high: 4}", "use choice or grid"),
        ("space.model.scoring.score_norm={type: choice, values: [batch, token]}", "value 'token' rejected"),
        ("space.model.loss.mtp_weight.values=[0.2, -1]", "value -1 rejected"),
    ],
)
def test_bad_search_space_entries_fail_in_one_line(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        plan(override)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_grid_needs_the_random_search() -> None:
    with pytest.raises(UserError, match="grid is not supported by search.algorithm optuna"):
        plan("space.model.masking.alpha_noise=grid", "search.algorithm=optuna")


def test_default_values_are_centred_on_the_base_config() -> None:
    dims = {d.knob: d for d in plan(
        "space.model.masking.alpha_noise=grid", "space.model.masking.sharpness=loguniform",
        "space.model.scoring.score_norm=choice",
    ).dimensions}
    assert dims["model.masking.alpha_noise"].values == (0.1, 0.2, 0.3)  # paper 0.2
    assert (dims["model.masking.sharpness"].low, dims["model.masking.sharpness"].high) == (10.0, 40.0)  # 20
    assert dims["model.scoring.score_norm"].values == ("batch", "sample")


def test_the_command_refuses_a_bad_space_with_exit_2_before_ray_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "tune/sweep_masking.py", "--config", str(SMOKE), f"storage_path={tmp_path}",
         "space.model.masking.alpha_info.high=1.2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: space.model.masking.alpha_info: alpha_i = 1.2 is outside [0, 1]"
    )
    assert not list(tmp_path.iterdir()), "nothing started, nothing written"


def test_concurrency_is_capped_by_what_the_cluster_holds() -> None:
    cfg = load_config(SweepConfig, SMOKE, [
        "max_concurrent_trials=8", "resources={workers: 2, cpus_per_worker: 0.25, gpus_per_worker: 0.5}",
    ])
    assert concurrency(cfg, {"CPU": 16, "GPU": 3}) == 3  # 2 workers x 0.5 GPU per trial
    assert concurrency(cfg, {"CPU": 1.2, "GPU": 8}) == 2  # 2 x 0.25 + 0.1 CPUs per trial
    assert concurrency(cfg.model_copy(update={"limit_to_cluster": False}), {"CPU": 1, "GPU": 1}) == 8


def test_a_rerun_with_another_config_is_refused(tmp_path: Path) -> None:
    first = plan(f"storage_path={tmp_path}")
    assert check_same_experiment(first) is False and check_same_experiment(first) is True
    with pytest.raises(UserError, match=r"started with another config \(differs in: num_samples\)"):
        check_same_experiment(plan(f"storage_path={tmp_path}", "num_samples=9"))


def test_production_sweep_config_loads() -> None:
    cfg = load_config(SweepConfig, REPO / "configs/tune/masking.yaml")
    assert {"model.masking.alpha_noise", "model.masking.alpha_info"} <= set(cfg.space)
    assert cfg.storage_path.startswith("s3://") and cfg.scheduler.type == "asha"


# --- ASHA on the loop's epoch reports, one trial at a time so that the order is fixed ------------


def _scripted_trial(config: dict) -> None:
    """Reports what the worker loop reports at each epoch end (`epoch`, the validation score)."""
    from ray import tune

    for epoch in (1, 2):
        tune.report({"epoch": epoch, SCORE_KEY: 100 * config["model.masking.alpha_noise"] + epoch})


def test_asha_stops_the_trial_below_the_first_rung_and_the_report_says_so(ray_local, tmp_path: Path) -> None:
    from ray import tune

    sweep = plan(f"storage_path={tmp_path}")  # smoke: 2 epochs per trial, ASHA rung at epoch 1, factor 2
    results = tune.Tuner(
        _scripted_trial,
        param_space={"model.masking.alpha_noise": tune.grid_search([0.3, 0.1, 0.4])},
        tune_config=tune.TuneConfig(metric=SCORE_KEY, mode="max", scheduler=trial_scheduler(sweep),
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(name="asha", storage_path=str(tmp_path), verbose=0),
    ).fit()
    rows = {r["alpha_n"]: r for r in collect_rows(results, sweep)}
    # 0.1 reaches epoch 1 with 11 < 31 (the rung's median so far): stopped; 0.4 beats it: runs on.
    assert {a: (r["status"], r["epochs"]) for a, r in rows.items()} == {
        0.3: ("completed", 2), 0.1: ("stopped early", 1), 0.4: ("completed", 2),
    }
    assert [r["alpha_n"] for r in sorted(rows.values(), key=lambda r: r["rank"])] == [0.4, 0.3, 0.1]
    assert rows[0.4]["val_mAP"] == pytest.approx(42.0) and rows[0.4]["best_epoch"] == 2


# --- the smoke sweep, killed and resumed ----------------------------------------------------------


def finished_trials(experiment: Path) -> dict[str, int]:
    """Trials the saved experiment state calls TERMINATED -> lines of their result.json."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        # trial_data: one [trial JSON, run metadata JSON] pair per trial
        trials = [json.loads(pair[0]) for pair in json.loads(states[-1].read_text())["trial_data"]]
    except (json.JSONDecodeError, KeyError, IndexError):
        return {}  # being rewritten
    done = {}
    for trial in trials:
        if trial.get("status") == "TERMINATED":
            results = experiment / f"trial_{trial['trial_id']}" / "result.json"
            done[trial["trial_id"]] = len(results.read_text().splitlines())
    return done


TRIALS = 2
# One trial at a time, one epoch each, FIFO: the kill after the first finished trial leaves the second
# unfinished (ASHA has its own test above); the recipe's other trial overrides.
KILL_AND_RESUME = [f"num_samples={TRIALS}", "max_concurrent_trials=1", "scheduler={type: fifo}",
                   "train.trial_overrides=" + json.dumps(["optim.epochs=1", "optim.warmup_epochs=0",
                                                          "data.preprocess_cpus=0.25", "run.log_every_steps=1000",
                                                          "run.num_to_keep=1"])]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two sweep processes; minutes each on a loaded 2-core machine
def test_smoke_sweep_resumes_after_a_kill_and_reports(smoke_world: Path, tmp_path: Path) -> None:  # noqa: F811
    command = [sys.executable, "tune/sweep_masking.py", "--config", str(SMOKE),
               *sweep_overrides(smoke_world, tmp_path / "sweeps", *KILL_AND_RESUME)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    experiment = tmp_path / "sweeps" / "smoke"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = time.monotonic()
    try:
        while not finished_trials(experiment):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() - started < 900, "no trial finished in 15 minutes"
            time.sleep(2)
    finally:
        kill_session(first)  # the driver and its local Ray: the experiment state is all that is left
    before = finished_trials(experiment)
    assert len(before) < TRIALS, "killed midway: some trials had not finished"

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming sweep smoke" in second.stderr
    after = finished_trials(experiment)
    assert len(after) == TRIALS == len(list(experiment.glob("trial_*"))), "the same trials, not new ones"
    for trial_id, lines in before.items():
        assert after[trial_id] == lines, f"finished trial {trial_id} was run again"

    report = experiment / "report"
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert len(rows) == TRIALS and len((report / "results.md").read_text().splitlines()) == 2 + TRIALS
    scores = [float(r["val_mAP"]) for r in rows]
    assert all(not math.isnan(s) for s in scores) and scores == sorted(scores, reverse=True)
    assert all(r["status"] == "completed" and int(r["epochs"]) == 1 for r in rows)

    best = load_config(TrainJobConfig, report / "best.yaml")
    top = rows[0]
    assert best.model.masking.alpha_noise == pytest.approx(float(top["alpha_n"]))
    assert best.model.masking.alpha_info == pytest.approx(float(top["alpha_i"]))
    assert best.model.loss.mtp_weight == pytest.approx(float(top["beta"]))
    recipe = load_config(TrainJobConfig, REPO / "configs/train/smoke.yaml")
    assert best.optim.epochs == recipe.optim.epochs, "the recipe's epochs, not the trials' (1)"
    assert best.eval.test_at_end and best.run.name == "smoke-best"
    assert f"Best trial {top['trial']}" in (report / "best.yaml").read_text()

    plots = sorted(p.name for p in (report / "plots").iterdir())
    assert plots == ["val_mAP_alpha_n_x_alpha_i.png", "val_mAP_vs_alpha_i.png", "val_mAP_vs_alpha_n.png",
                     "val_mAP_vs_beta.png"]
    assert all((report / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    assert yaml.safe_load((experiment / "sweep_config.json").read_text())["experiment"] == "smoke"
