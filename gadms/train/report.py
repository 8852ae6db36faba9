"""What a finished run leaves next to its checkpoints: TensorBoard events, a PNG of the curves,
`summary.json`, and a printed table. Built from the metric history that travels in checkpoints."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402

from gadms import storage  # noqa: E402
from gadms.train.loop import LOSS_KEYS  # noqa: E402



def write_tensorboard(history: Sequence[dict[str, float]], run_uri: str) -> str:
    """Event files under `<run>/tensorboard/` (readable by `tensorboard --logdir`)."""
    from torch.utils.tensorboard import SummaryWriter

    target = storage.join(run_uri, "tensorboard")
    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)
        for entry in history:
            step = int(entry["step"])
            for key, value in entry.items():
                if key not in ("step", "epoch"):
                    writer.add_scalar(key if "/" in key else f"train/{key}", float(value), step)
        writer.close()
        fs, path = storage.resolve(target)
        fs.create_dir(path, recursive=True)
        pafs.copy_files(tmp, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return target


def curves_png(history: Sequence[dict[str, float]], title: str) -> bytes:
    """Training losses and validation metrics against the step."""
    train = [e for e in history if "loss" in e]
    val = [e for e in history if any(k.startswith("val/") for k in e)]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key in LOSS_KEYS:
        points = [(e["step"], e[key]) for e in train if key in e]
        if points:
            ax_loss.plot(*zip(*points), label=key)
    ax_loss.set(xlabel="step", ylabel="loss", title="training losses")
    ax_loss.legend()
    val_keys = sorted({k for e in val for k in e if k.startswith("val/") and k.endswith(("/R1", "/mAP"))})
    for key in val_keys:
        ax_val.plot([e["step"] for e in val], [e[key] for e in val], marker="o", label=key[4:])
    ax_val.set(xlabel="step", ylabel="percent", title="validation")
    if val_keys:
        ax_val.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def summary_table(summary: dict[str, Any]) -> str:
    """A Markdown table of the best checkpoint's validation and test metrics, against chance."""
    lines = ["| benchmark | split | R1 | R5 | R10 | mAP | mINP | chance R1 | chance mAP |", "|---|---|---|---|---|---|---|---|---|"]
    for name, result in summary.get("test", {}).items():
        chance = result.get("chance", {})
        lines.append(
            f"| {name} | {result['split']} | {result['R1']:.2f} | {result['R5']:.2f} | {result['R10']:.2f} | "
            f"{result['mAP']:.2f} | {result['mINP']:.2f} | {chance.get('R1', float('nan')):.2f} | "
            f"{chance.get('mAP', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def write_run_report(history: Sequence[dict[str, float]], summary: dict[str, Any], run_uri: str) -> dict[str, str]:
    """All of the above into the run folder; returns what was written where."""
    written = {"tensorboard": write_tensorboard(history, run_uri)}
    png = storage.join(run_uri, "curves.png")
    storage.write_bytes_atomic(png, curves_png(history, summary.get("name", "")))
    written["curves"] = png
    path = storage.join(run_uri, "summary.json")
    storage.write_bytes_atomic(path, json.dumps(summary, indent=1).encode())
    written["summary"] = path
    return written


def read_history(checkpoint_dir: str | Path, file_name: str) -> list[dict[str, float]]:
    path = Path(checkpoint_dir) / file_name
    return json.loads(path.read_text()) if path.exists() else []
