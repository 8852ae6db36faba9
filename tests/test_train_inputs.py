"""The training job's inputs: what reaches the workers (samples, pids, preprocessing), and bad input
that must stop `python -m gadms.train` in one line before Ray starts, leaving nothing behind."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from gadms.augment import AugmentConfig
from gadms.checkpoint import TrainingProgress, save_checkpoint
from gadms.config import load_config
from gadms.data.benchmarks import read_benchmark
from gadms.errors import ConfigError, UserError
from gadms.evaluate import chance_metrics
from gadms.metrics import retrieval_metrics
from gadms.step import GADMSModel
from gadms.tokenizer import caption_tokenizer
from gadms.train.config import TrainJobConfig
from gadms.train.data import describe_source, preprocess, stable_pid, webperson_to_samples
from gadms.train.job import build_trainer, epoch_steps, latest_checkpoint, plan_run
from synth_world import smoke_config, smoke_world  # noqa: F401  (fixtures)
from train_helpers import REPO, SMOKE, smoke_overrides, train_command


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (32, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


def _rows() -> pa.Table:
    return pa.table({
        "image": [_jpeg((250, 0, 0)), b"not an image at all"],
        "image_path": ["a/1.jpg", "b/2.jpg"],
        "caption1": ["a man in a red coat", "a woman"],
        "caption2": ["red coat, black shoes", "a woman in blue"],
    })


def test_every_row_gives_two_samples_with_stable_pids():
    per_caption = webperson_to_samples(_rows(), "caption")
    assert per_caption.column("caption").to_pylist() == [
        "a man in a red coat", "a woman", "red coat, black shoes", "a woman in blue"
    ]
    pids = per_caption.column("pid").to_pylist()
    assert len(set(pids)) == 4  # every caption its own identity (the release's pretraining)
    assert pids[0] == stable_pid("a/1.jpg#1") and pids[2] == stable_pid("a/1.jpg#2")
    per_image = webperson_to_samples(_rows(), "image").column("pid").to_pylist()
    assert per_image[0] == per_image[2] != per_image[1] == per_image[3]
    assert all(0 <= p < 2**63 for p in pids)


def test_preprocess_normalises_tokenises_and_flags_undecodable_images():
    samples = webperson_to_samples(_rows(), "caption")
    no_augment = AugmentConfig(hflip_p=0.0, pad=0, random_erasing_p=0.0)
    out = preprocess(samples, (64, 32), no_augment.model_dump(), 77)
    assert out["image"].shape == (4, 3, 64, 32) and out["image"].dtype == np.float32
    assert out["valid"].tolist() == [True, False, True, False]
    # A pure red image after CLIP normalisation: (1 - mean) / std in R, (0 - mean) / std in G and B.
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    expected = (np.array([250 / 255, 0, 0]) - mean) / std
    np.testing.assert_allclose(out["image"][0].mean(axis=(1, 2)), expected, atol=0.05)
    reference = caption_tokenizer(77)(samples.column("caption").to_pylist()).numpy()
    np.testing.assert_array_equal(out["tokens"], reference)
    assert out["pid"].tolist() == samples.column("pid").to_pylist()


def test_chance_metrics_match_random_rankings(smoke_world):  # noqa: F811
    """The closed-form chance R1/mAP agree with the average over many random similarity matrices."""
    split = read_benchmark(smoke_world / "CUHK-PEDES").split("test")
    rng = np.random.default_rng(0)
    draws = [
        retrieval_metrics(rng.random((len(split.captions), len(split.image_paths))), split.caption_pids, split.image_pids)
        for _ in range(400)
    ]
    chance = chance_metrics(split)
    for key in ("R1", "mAP"):
        values = np.array([d[key] for d in draws])
        assert abs(values.mean() - chance[key]) < 4 * values.std() / np.sqrt(len(values)) + 0.05, key


def test_an_existing_run_is_found_and_a_different_model_refused(tmp_path, smoke_world):  # noqa: F811
    cfg = load_config(TrainJobConfig, SMOKE, smoke_overrides(smoke_world, str(tmp_path), "r1"))
    assert plan_run(cfg).resume_from is None
    run = tmp_path / "r1"
    for step in (3, 12, 15):
        save_checkpoint(run / f"step-{step:08d}", GADMSModel(cfg.model), TrainingProgress(step=step))
    assert plan_run(cfg).resume_from is None  # folders alone are no record: Ray's snapshot is
    # Ray Train registered 12 (15 is, say, a folder a killed driver left half-uploaded).
    snapshot = {"latest_checkpoint_result": {"checkpoint_dir_name": "step-00000012"}}
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
    plan = plan_run(cfg)
    assert plan.resume_from == str(run / "step-00000012") == latest_checkpoint(str(run))
    wider = load_config(TrainJobConfig, SMOKE, smoke_overrides(
        smoke_world, str(tmp_path), "r1", "model.backbone.custom_architecture.embed_dim=32"
    ))
    with pytest.raises(Exception, match=r"incompatible checkpoint.*choose a new run.name"):
        plan_run(wider)


def test_less_data_than_one_global_batch_is_refused(tmp_path, smoke_world):  # noqa: F811
    cfg = load_config(TrainJobConfig, SMOKE, smoke_overrides(smoke_world, str(tmp_path), "r", "global_batch_size=4096"))
    with pytest.raises(UserError, match=r"90 samples per epoch is less than one global batch \(4096\)"):
        plan_run(cfg)
    assert epoch_steps(cfg.model_copy(update={"global_batch_size": 32}), describe_source(cfg.data)) == 90 // 32


def test_workers_can_be_pinned_to_one_gpu_type(ray_local, tmp_path, smoke_world):  # noqa: F811
    """`scaling.accelerator_type` reaches Ray Train's ScalingConfig (no GPU is needed to build the
    trainer, only to run it)."""
    pinned = ["scaling.use_gpu=true", "scaling.accelerator_type=A100"]
    cfg = load_config(TrainJobConfig, SMOKE, smoke_overrides(smoke_world, str(tmp_path), "gpu", *pinned))
    scaling = build_trainer(cfg, describe_source(cfg.data), steps_per_epoch=2).scaling_config
    assert (scaling.accelerator_type, scaling.use_gpu, scaling.num_workers) == ("A100", True, 2)
    anywhere = load_config(TrainJobConfig, SMOKE, smoke_overrides(smoke_world, str(tmp_path), "cpu"))
    unpinned = build_trainer(anywhere, describe_source(anywhere.data), steps_per_epoch=2).scaling_config
    assert unpinned.accelerator_type is None
    with pytest.raises(ConfigError, match=r"accelerator_type \(A100\) needs use_gpu: true"):
        load_config(TrainJobConfig, SMOKE, smoke_overrides(smoke_world, str(tmp_path), "x", pinned[1]))


def _write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


BAD_INPUTS = {
    "missing data path": (lambda w, t: [f"data.uri={t}/nowhere"], "no such file or directory"),
    "empty data folder": (lambda w, t: [f"data.uri={(t / 'empty').mkdir() or t / 'empty'}"], "no .parquet files"),
    "parquet without caption2": (
        lambda w, t: [_write_parquet(t / "d/x.parquet", _rows().drop(["caption2"])) or f"data.uri={t}/d"],
        "missing column 'caption2'",
    ),
    "benchmark in the wrong format": (
        lambda w, t: [f"eval.benchmarks=[{_broken_benchmark(w, t)}]"], "reid_raw.json",
    ),
    "unknown config key": (lambda w, t: ["optim.learning_rate=0.1"], "learning_rate"),
    "incompatible pretrained checkpoint": (
        lambda w, t: [f"model.backbone.pretrained={_other_model_weights(t)}"], "do not fit",
    ),
}


def _broken_benchmark(world: Path, tmp: Path) -> Path:
    """A CUHK-PEDES folder whose annotation is an object, not the list of records the format is."""
    root = tmp / "CUHK-PEDES"
    shutil.copytree(world / "CUHK-PEDES", root)
    (root / "reid_raw.json").write_text(json.dumps({"images": []}))
    return root


def _other_model_weights(tmp: Path) -> Path:
    cfg = load_config(TrainJobConfig, SMOKE, ["data.uri=x", "run.name=x", "model.backbone.custom_architecture.embed_dim=32"])
    path = tmp / "other.pt"
    torch.save(GADMSModel(cfg.model).backbone.clip.state_dict(), path)
    return path


def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, smoke_world):  # noqa: F811
    """Every case is its own `python -m gadms.train`, started together: each spends ~10 s importing
    torch and Ray on 2 cores before it reaches its input check, so they overlap that wait."""
    started = {}
    for case, (make_overrides, expected) in sorted(BAD_INPUTS.items()):
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        overrides = smoke_overrides(smoke_world, str(folder / "runs"), "bad") + make_overrides(smoke_world, folder)
        process = subprocess.Popen(train_command(overrides), cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        started[case] = (process, expected, folder / "runs")
    for case, (process, expected, runs) in started.items():
        _, stderr = process.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        assert process.returncode == 2, (case, stderr[-2000:])
        # Progress logs may come before it; the error is one line, the last, with no traceback.
        assert errors == lines[-1:] and expected in errors[0], (case, lines)
        assert "Traceback" not in stderr, case
        assert not runs.exists(), case  # no run folder, no checkpoint, no report
