"""The offline demo (`make demo`): the whole chain of jobs on this machine, nothing downloaded.

It starts locally what a cluster provides: a Ray instance, a real S3-compatible server (SeaweedFS on
127.0.0.1) and a web server for the image URLs, then runs the jobs' own code, in order:
1. the synthetic person world (`gadms.synth`): benchmarks in their real formats, WebPerson Parquet
   on S3, the web corpus (image tables with URLs) and a contact sheet;
2. the dataset job (`pipelines/build_dataset.py`, smoke profile: the tiny LLaVA trained here on
   synthetic crops, not a real MLLM) on the web corpus, served by the local web server -> S3;
3. pretraining (`gadms.train`): the stand-in CLIP (InfoNCE from random weights, since OpenAI's CLIP
   cannot be downloaded), then GA-DMS from it, on the WebPerson Parquet on S3, checkpoints on S3,
   validated on the val splits and tested on the test splits of the three benchmarks;
4. a small sweep (`tune/sweep_masking.py`, configs/tune/demo.yaml) of the mask ratios from the stand-in.
It prints a summary (rows kept and rejected per stage, R1/mAP against chance, the best sweep config)
and the paths of every report; `report.json` holds the same.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
from pydantic import Field

from gadms import storage
from gadms.cli import config_arg_parser, run_main
from gadms.config import Config, load_config, to_yaml

log = logging.getLogger("gadms.demo")

DEFAULT_CONFIG = "configs/demo.yaml"
REPO = Path(__file__).resolve().parents[1]


class DemoConfig(Config):
    output_dir: str = Field("outputs/demo", description="local folder for the world and the reports")
    storage: Literal["s3", "local"] = Field(
        "s3", description="s3: data, checkpoints and sweep on a SeaweedFS server on 127.0.0.1; local: folders"
    )
    num_cpus: int = Field(2, ge=1, description="CPUs of the local Ray instance")
    world_size: str = Field("demo", description="synthetic world profile in configs/synth/ (smoke, demo)")
    seed: int = Field(0, ge=0, description="seed of the synthetic world")
    dataset_config: str = "configs/dataset/smoke.yaml"
    stand_in_config: str = "configs/train/tiny_clip.yaml"
    train_config: str = "configs/train/demo.yaml"
    sweep_config: str = "configs/tune/demo.yaml"
    train_overrides: list[str] = Field(default_factory=list, description="added to both training runs")
    sweep_overrides: list[str] = Field(default_factory=list, description="added to the sweep config")


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def build_dataset(cfg: DemoConfig, world: Path, output: str) -> dict[str, Any]:
    """The dataset job on the world's web corpus, its URLs served by a local web server."""
    from gadms.synth.web_corpus import rebase_web_corpus
    from gadms.testing.http_server import MisbehavingHTTPServer
    from pipelines.dataset.config import DatasetJobConfig
    from pipelines.dataset.job import run_job
    from pipelines.dataset.smoke_model import ensure_smoke_model

    job = load_config(DatasetJobConfig, REPO / cfg.dataset_config, [f"input={world / 'web' / 'corpus.parquet'}",
                                                                    f"output={output}"])  # fmt: skip
    if job.mllm.model == "outputs/models/smoke-vlm":  # the smoke profile's tiny LLaVA, built here in seconds
        job = job.model_copy(update={"mllm": job.mllm.model_copy(update={"model": str(ensure_smoke_model(REPO / job.mllm.model))})})
    with MisbehavingHTTPServer(world / "web") as server:
        rebase_web_corpus(str(world / "web"), server.base_url)
        return run_job(job)


def train(cfg: DemoConfig, recipe: str, overrides: list[str]) -> dict[str, Any]:
    from gadms.train.config import TrainJobConfig
    from gadms.train.job import plan_run, run_training

    job = load_config(TrainJobConfig, REPO / recipe, [*overrides, *cfg.train_overrides])
    return run_training(job, plan_run(job)).summary


def sweep(cfg: DemoConfig, overrides: list[str]) -> dict[str, Any]:
    from gadms.sweep.config import SweepConfig
    from gadms.sweep.job import check_inputs, plan_sweep, run_sweep

    plan = plan_sweep(load_config(SweepConfig, REPO / cfg.sweep_config, [*overrides, *cfg.sweep_overrides]))
    check_inputs(plan)
    written = run_sweep(plan)
    rows = list(csv.DictReader(io.StringIO(storage.read_bytes(written["results.csv"]).decode())))
    return {"reports": written, "trials": len(rows), "best": rows[0] if rows else None}


def print_summary(report: dict[str, Any]) -> None:
    dataset = report["dataset"]
    say(f"dataset job: {dataset['input_rows']} web rows -> {dataset['kept_rows']} kept, {dataset['rejected_rows']} "
        f"rejected (every row accounted for: {dataset['complete']}); {dataset['kept_crops']} person crops written")
    for stage in dataset["stages"]:
        reasons = ", ".join(f"{k} {v}" for k, v in stage["rejected"].items()) or "-"
        say(f"  {stage['level']:>4} stage {stage['stage']:<12} in {stage['in']:>4} out {stage['out']:>4}  rejected: {reasons}")
    for name in ("stand_in", "gadms"):
        run = report[name]
        for bench, m in run.get("test", {}).items():
            say(f"{run['name']} ({run['objective']}, {run['steps']} steps) {bench} test: R1 {m['R1']:.2f} "
                f"({m['R1'] / m['chance']['R1']:.1f}x chance {m['chance']['R1']:.2f}), mAP {m['mAP']:.2f} "
                f"({m['mAP'] / m['chance']['mAP']:.1f}x chance {m['chance']['mAP']:.2f})")
    best = report["sweep"]["best"]
    if best:
        knobs = ", ".join(f"{k} {float(v):.4g}" for k, v in best.items() if k not in ("rank", "trial", "status"))
        say(f"sweep: {report['sweep']['trials']} trials; best {best['trial']}: {knobs}")
    say("reports:")
    for what, uri in report["reports"].items():
        say(f"  - {what}: {uri}")


def main(argv: list[str] | None = None) -> int:
    from gadms.synth.config import load_synth_config
    from gadms.synth.generate import generate_world

    args = config_arg_parser(__doc__.splitlines()[0], DEFAULT_CONFIG).parse_args(argv)
    cfg = load_config(DemoConfig, args.config, args.overrides)
    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    report: dict[str, Any] = {"config": cfg.model_dump(), "seconds": {}}
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        report["seconds"][name] = round(time.perf_counter() - since, 1)
        return time.perf_counter()

    with ExitStack() as stack:
        import ray

        if cfg.storage == "s3":
            from gadms.testing.s3_server import SeaweedS3Server

            server = stack.enter_context(SeaweedS3Server())
            os.environ.update(server.env())  # before Ray starts, so its workers inherit the endpoint
            root = f"s3://{server.create_bucket('demo')}"
            say(f"started a local S3 server (SeaweedFS) at {server.endpoint}; bucket {root}")
        else:
            root = str(out / "store")
        webperson, runs = storage.join(root, "webperson"), storage.join(root, "runs")

        t = time.perf_counter()
        world_cfg = load_synth_config(cfg.world_size, overrides=[f"seed={cfg.seed}", f"webperson.output={webperson}"])
        manifest = generate_world(world_cfg, str(world), overwrite=True)
        report["world"] = {"datasets": manifest["datasets"], "web_corpus": manifest["web_corpus"]}
        t = lap("world", t)
        say(f"1/4 synthetic '{cfg.world_size}' world in {report['seconds']['world']:.0f} s: benchmarks under {world}, "
            f"WebPerson at {webperson}, contact sheet {world / 'contact_sheet.png'}")

        # With the dashboard, Ray Train's placement-group cleaner can query the state API (without
        # it, it warns every few seconds and cannot release a stopped trial's reservation).
        context = ray.init(num_cpus=cfg.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                           configure_logging=False)  # fmt: skip
        stack.callback(ray.shutdown)
        say(f"started a local Ray instance with {cfg.num_cpus} CPUs; dashboard http://{context.dashboard_url}")

        report["dataset"] = build_dataset(cfg, world, storage.join(root, "dataset"))
        t = lap("dataset", t)
        say(f"2/4 dataset job in {report['seconds']['dataset']:.0f} s -> {storage.join(root, 'dataset')}")

        benchmarks = [str(world / name) for name in ("CUHK-PEDES", "RSTPReid", "ICFG-PEDES")]
        common = [f"data.uri={webperson}", f"eval.benchmarks={json.dumps(benchmarks)}", f"run.storage_path={runs}"]
        report["stand_in"] = train(cfg, cfg.stand_in_config, common)
        stand_in_model = report["stand_in"]["model"]
        report["gadms"] = train(cfg, cfg.train_config, [*common, f"model.backbone.pretrained={stand_in_model}"])
        t = lap("training", t)
        say(f"3/4 stand-in CLIP and GA-DMS pretraining in {report['seconds']['training']:.0f} s")

        trial_data = [f"data.uri={webperson}", f"eval.benchmarks=[{benchmarks[0]}]",
                      f"model.backbone.pretrained={stand_in_model}"]  # fmt: skip
        report["sweep"] = sweep(cfg, [f"storage_path={storage.join(root, 'sweeps')}",
                                      f"train.overrides={json.dumps(trial_data)}"])  # fmt: skip
        lap("sweep", t)
        say(f"4/4 sweep in {report['seconds']['sweep']:.0f} s")
        reports = {
            "dataset stats": storage.join(root, "dataset", "stats.json"),
            "stand-in CLIP summary": storage.join(runs, report["stand_in"]["name"], "summary.json"),
            "GA-DMS summary": storage.join(runs, report["gadms"]["name"], "summary.json"),
            "GA-DMS curves": storage.join(runs, report["gadms"]["name"], "curves.png"),
            **{f"sweep {k}": v for k, v in report["sweep"]["reports"].items()},
        }
        if cfg.storage == "s3":  # the server and its data go away with the demo: keep a local copy
            copy = out / "bucket"
            fs, path = storage.resolve(root)
            pafs.copy_files(path, str(copy), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            say(f"copied {root} to {copy} before stopping the S3 server")
            reports = {k: v.replace(root, str(copy), 1) for k, v in reports.items()}

    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    report["reports"] = {**reports, "demo report": str(out / "report.json")}
    storage.write_bytes_atomic(str(out / "report.json"), json.dumps(report, indent=1, default=str).encode())
    storage.write_bytes_atomic(str(out / "config.yaml"), to_yaml(cfg).encode())
    print_summary(report)
    say(f"done in {report['seconds']['total'] / 60:.1f} min")
    return 0 if report["dataset"]["complete"] else 1


if __name__ == "__main__":
    run_main(main)
