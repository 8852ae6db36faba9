"""The Ray Data pipeline: each stage of `stages.py` as an operator with its own resources.

    read -> normalize -> [skip done] -> registry (ids, URLs; one ordered actor) -> download (tasks)
    -> content registry (one ordered actor) -> decode (tasks) -> detect (actors, CPU/GPU) -> pose+crop
    -> commit rejects -> MLLM filter (actors / vLLM processor) -> commit rejects -> 2 captions
    -> caption check -> commit everything

`run_job(cfg)` also prepares the output (deletes orphans of a killed run, reads what earlier runs
committed so they are skipped and seed the registries), runs the pipeline and writes stats.json and
report.html (see `finalize.py`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import pyarrow as pa

from gadms import storage
from gadms.config import to_yaml
from gadms.errors import UserError
from pipelines.dataset import finalize
from pipelines.dataset.config import DatasetJobConfig
from pipelines.dataset.inputs import InputFiles, find_inputs, read_dataset
from pipelines.dataset.records import (
    CROP_SCHEMA, OK, ROW_SCHEMA, clean_orphans, commit_records, read_markers, rows_table, table_rows,
)  # fmt: skip
from pipelines.dataset.stages import (
    Registry, caption_rows, check_rows, decode_rows, detect_rows, download_rows, filter_rows, live, normalize_input,
    pose_rows,
)  # fmt: skip

log = logging.getLogger(__name__)
JOB_FILE = "job.json"
REGISTRY_CPUS = 0.1  # the ordered dedup registries do dictionary lookups only
_CACHE: dict[str, Any] = {}


def _get(ref: Any) -> Any:
    """A driver-side object (done sets) fetched once per worker process."""
    import ray

    key = ref.hex()
    if key not in _CACHE:
        _CACHE[key] = ray.get(ref)
    return _CACHE[key]


# ------------------------------------------------------------ Ray Data UDFs (pyarrow batches in and out)


def normalize_batch(batch: pa.Table, cfg: DatasetJobConfig, kind: str) -> pa.Table:
    return rows_table(normalize_input(table_rows(batch), cfg.read, kind), ROW_SCHEMA)


def skip_done_batch(batch: pa.Table, done_ref: Any) -> pa.Table:
    done = _get(done_ref)
    mask = pa.array([i not in done for i in batch.column("id").to_pylist()], type=pa.bool_())
    return batch.filter(mask)


class RegistryUDF:
    def __init__(self, what: str, seed_ref: Any, check_ids: bool) -> None:
        import ray

        self.registry = Registry(what, ray.get(seed_ref) if seed_ref is not None else None, check_ids)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return rows_table(self.registry(table_rows(batch)), ROW_SCHEMA)


def download_batch(batch: pa.Table, cfg: DatasetJobConfig) -> pa.Table:
    return rows_table(download_rows(table_rows(batch), cfg.download, cfg.download.enabled), ROW_SCHEMA)


def decode_batch(batch: pa.Table, cfg: DatasetJobConfig) -> pa.Table:
    return rows_table(decode_rows(table_rows(batch), cfg.decode), ROW_SCHEMA)


class DetectUDF:
    def __init__(self, cfg: DatasetJobConfig) -> None:
        from pipelines.dataset.detect import build_detector

        self.cfg = cfg
        self.detector = build_detector(cfg.detect, "persons") if cfg.detect.enabled else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        return rows_table(detect_rows(table_rows(batch), self.detector, self.cfg.detect), ROW_SCHEMA)


def pose_batch(batch: pa.Table, cfg: DatasetJobConfig, done_ref: Any) -> pa.Table:
    done = _get(done_ref) if done_ref is not None else frozenset()
    return rows_table(pose_rows(table_rows(batch), cfg.pose, cfg.pose.enabled, done), CROP_SCHEMA)


def commit_batch(batch: pa.Table, cfg: DatasetJobConfig, kind: str, detector: str, final: bool) -> pa.Table:
    """Commit the batch's finished records; pass the live ones on (or a one-row summary when final)."""
    rows = table_rows(batch)
    finished = rows if final else [r for r in rows if r["status"] != OK]
    marker = None
    if finished:
        marker = commit_records(cfg.output, kind, finished, detector, cfg.mllm.model, cfg.write.compression)
    if final:
        return pa.table({"key": [marker["key"] if marker else ""], "kept": [marker["kept"] if marker else 0],
                         "rejected": [marker["rejected"] if marker else 0]})  # fmt: skip
    return rows_table(live(rows), CROP_SCHEMA)


class FilterUDF:
    def __init__(self, cfg: DatasetJobConfig) -> None:
        from pipelines.dataset.mllm import TransformersMLLM

        self.cfg = cfg
        self.backend = TransformersMLLM(cfg.mllm, cfg.filter.num_gpus)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = filter_rows(table_rows(batch), self.backend, self.cfg.mllm, self.cfg.filter)
        return rows_table(rows, CROP_SCHEMA)


class CaptionUDF:
    def __init__(self, cfg: DatasetJobConfig) -> None:
        from pipelines.dataset.mllm import TransformersMLLM
        from pipelines.dataset.templates import load_bank

        self.cfg = cfg
        self.bank = load_bank(cfg.caption.templates)
        self.backend = TransformersMLLM(cfg.mllm, cfg.caption.num_gpus)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = caption_rows(table_rows(batch), self.backend, self.bank, self.cfg.mllm, self.cfg.caption)
        return rows_table(rows, CROP_SCHEMA)


def check_batch(batch: pa.Table, cfg: DatasetJobConfig) -> pa.Table:
    rows = table_rows(batch)
    if cfg.caption_check.enabled and cfg.caption.enabled:
        rows = check_rows(rows, cfg.caption_check)
    return rows_table(rows, CROP_SCHEMA)


# ------------------------------------------------------------ assembly


def _task_kwargs(stage: Any) -> dict[str, Any]:
    import ray

    return {"batch_format": "pyarrow", "batch_size": stage.batch_size, "num_cpus": stage.num_cpus,
            "num_gpus": stage.num_gpus or None, "compute": ray.data.TaskPoolStrategy(size=stage.concurrency)}  # fmt: skip


def _actor_kwargs(stage: Any, size: int | None = None, in_flight: int | None = None) -> dict[str, Any]:
    import ray

    return {"batch_format": "pyarrow", "batch_size": stage.batch_size, "num_cpus": stage.num_cpus,
            "num_gpus": stage.num_gpus or None,
            "compute": ray.data.ActorPoolStrategy(size=size or stage.concurrency, max_tasks_in_flight_per_actor=in_flight)}  # fmt: skip


def detector_name(cfg: DatasetJobConfig) -> str:
    if not cfg.detect.enabled:
        return "none"
    return {"precomputed": "precomputed", "torchvision": "torchvision-keypointrcnn", "yolo": "ultralytics-yolo11"}[
        cfg.detect.backend
    ]


def build_pipeline(cfg: DatasetJobConfig, inputs: InputFiles, state: finalize.ResumeState):
    import ray

    light = cfg.download.num_cpus  # reading, normalising and skipping are as light as a download task
    ds = read_dataset(inputs, cfg.read, num_cpus=light)
    ds = ds.map_batches(normalize_batch, fn_kwargs={"cfg": cfg, "kind": inputs.kind}, batch_format="pyarrow",
                        batch_size=cfg.download.batch_size, num_cpus=light)  # fmt: skip
    if state.done_rows:
        ds = ds.map_batches(skip_done_batch, fn_kwargs={"done_ref": ray.put(frozenset(state.done_rows))},
                            batch_format="pyarrow", num_cpus=light)  # fmt: skip
    url_seed = ray.put(state.url_owners) if cfg.dedup.url else None
    ds = ds.map_batches(RegistryUDF, fn_constructor_kwargs={"what": "url", "seed_ref": url_seed if cfg.dedup.url else None,
                                                            "check_ids": True},
                        **{**_actor_kwargs(cfg.download, size=1, in_flight=1), "num_cpus": REGISTRY_CPUS})  # fmt: skip
    if not cfg.dedup.url:
        log.info("dedup.url is off: the registry only checks that ids are unique")
    ds = ds.map_batches(download_batch, fn_kwargs={"cfg": cfg}, **_task_kwargs(cfg.download))
    if cfg.dedup.content:
        ds = ds.map_batches(RegistryUDF, fn_constructor_kwargs={"what": "content", "seed_ref": ray.put(state.content_owners),
                                                                "check_ids": False},
                            **{**_actor_kwargs(cfg.download, size=1, in_flight=1), "num_cpus": REGISTRY_CPUS})  # fmt: skip
    ds = ds.map_batches(decode_batch, fn_kwargs={"cfg": cfg}, **_task_kwargs(cfg.decode))
    ds = ds.map_batches(DetectUDF, fn_constructor_kwargs={"cfg": cfg}, **_actor_kwargs(cfg.detect))
    done_crops = ray.put(frozenset(state.done_crops)) if state.done_crops else None
    ds = ds.map_batches(pose_batch, fn_kwargs={"cfg": cfg, "done_ref": done_crops}, **_task_kwargs(cfg.pose))
    detector = detector_name(cfg)
    commit = {"cfg": cfg, "detector": detector}
    ds = ds.map_batches(commit_batch, fn_kwargs={**commit, "kind": "rows", "final": False},
                        **_task_kwargs(cfg.write))  # fmt: skip
    if cfg.filter.enabled:
        if cfg.mllm.backend == "vllm":
            from pipelines.dataset.vllm_backend import vllm_filter

            ds = vllm_filter(ds, cfg)
        else:
            ds = ds.map_batches(FilterUDF, fn_constructor_kwargs={"cfg": cfg}, **_actor_kwargs(cfg.filter))
        ds = ds.map_batches(commit_batch, fn_kwargs={**commit, "kind": "filter", "final": False},
                            **_task_kwargs(cfg.write))  # fmt: skip
    if cfg.caption.enabled:
        if cfg.mllm.backend == "vllm":
            from pipelines.dataset.templates import load_bank
            from pipelines.dataset.vllm_backend import vllm_captions

            ds = vllm_captions(ds, cfg, load_bank(cfg.caption.templates))
        else:
            ds = ds.map_batches(CaptionUDF, fn_constructor_kwargs={"cfg": cfg}, **_actor_kwargs(cfg.caption))
    ds = ds.map_batches(check_batch, fn_kwargs={"cfg": cfg}, **_task_kwargs(cfg.write))
    return ds.map_batches(commit_batch, fn_kwargs={**commit, "kind": "final", "final": True}, **_task_kwargs(cfg.write))


def _preflight(cfg: DatasetJobConfig) -> InputFiles:
    if not cfg.input:
        raise UserError("input: not set (e.g. input=s3://bucket/coyo/ on the command line)")
    if not cfg.output:
        raise UserError("output: not set (e.g. output=s3://bucket/webperson/ on the command line)")
    if cfg.detect.enabled and cfg.detect.backend == "torchvision" and not (cfg.detect.weights or cfg.detect.random_init):
        raise UserError("detect.weights: the torchvision detector needs a state dict file (local or s3://)")
    if cfg.caption.enabled:
        from pipelines.dataset.templates import load_bank

        load_bank(cfg.caption.templates)  # a bad bank fails here, with its line number, not on a worker
    inputs = find_inputs(cfg.input, cfg.read)
    job_uri = storage.join(cfg.output, JOB_FILE)
    identity = {"input": cfg.input, "files": inputs.files, "kind": inputs.kind}
    if storage.exists(job_uri):
        previous = json.loads(storage.read_bytes(job_uri))
        if previous.get("identity") != identity:
            raise UserError(f"output {cfg.output}: holds a run over other input ({previous.get('identity', {}).get('input')}); "
                            "use a new output folder")  # fmt: skip
    else:
        storage.write_bytes_atomic(job_uri, json.dumps({"identity": identity}, indent=1).encode())
    return inputs


def init_ray(cfg: DatasetJobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": True}
    if cfg.ray.address:
        kwargs["address"] = cfg.ray.address
    starts_local = cfg.ray.address == "local" or (cfg.ray.address is None and not os.environ.get("RAY_ADDRESS"))
    if starts_local:  # only for an instance we start ourselves
        kwargs["include_dashboard"] = cfg.ray.dashboard
        if cfg.ray.num_cpus:
            kwargs["num_cpus"] = cfg.ray.num_cpus
    ray.init(**kwargs)


def run_job(cfg: DatasetJobConfig) -> dict[str, Any]:
    import ray

    inputs = _preflight(cfg)
    started = time.time()
    markers = read_markers(cfg.output)
    removed = clean_orphans(cfg.output, markers)
    if removed:
        log.warning("removed %d files of an interrupted run (their rows are redone): %s", len(removed), removed[:5])
    state = finalize.resume_state(cfg.output, markers)
    if state.done_rows or state.done_crops:
        log.info("resuming: %d rows and %d crops already committed are skipped", len(state.done_rows), len(state.done_crops))
    storage.write_bytes_atomic(storage.join(cfg.output, "config.yaml"), to_yaml(cfg).encode())
    init_ray(cfg)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = cfg.ray.preserve_order
    ctx.enable_progress_bars = False
    ds = build_pipeline(cfg, inputs, state)
    kept = rejected = commits = 0
    last_log = time.monotonic()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        kept += sum(batch.column("kept").to_pylist())
        rejected += sum(batch.column("rejected").to_pylist())
        commits += batch.num_rows
        if time.monotonic() - last_log > 10:
            log.info("committed so far in this run: %d kept crops, %d rejects", kept, rejected)
            last_log = time.monotonic()
    log.info("pipeline done: the last stage committed %d kept crops and %d late rejects", kept, rejected)
    stats = finalize.finalize(cfg, inputs, started, run_kept=kept, run_rejected=rejected)
    return stats
