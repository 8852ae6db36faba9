"""What earlier runs committed (for resuming), and the end-of-run accounting: stats.json, report.html.

Everything here is computed from the committed files themselves (markers, data and rejects
shards), never from counters of one run, so the numbers hold across interrupted and resumed runs:
every input row must be either in data/ (as one or more crops) or in rejects/, exactly once.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


from gadms import storage
from pipelines.dataset.outcomes import CROP_STAGES, ROW_STAGES, Reason, Stage
from pipelines.dataset.records import committed_files, read_committed, read_markers

log = logging.getLogger(__name__)
STATS_FILE, REPORT_FILE = "stats.json", "report.html"


@dataclass
class ResumeState:
    done_rows: set[str] = field(default_factory=set)
    done_crops: set[str] = field(default_factory=set)
    url_owners: dict[str, str] = field(default_factory=dict)
    content_owners: dict[str, str] = field(default_factory=dict)


def _committed(output: str, markers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = read_committed(output, markers, "data", ["source_id", "crop_index", "num_crops", "url_sha", "content_sha"])
    rejects = read_committed(output, markers, "rejects",
                             ["id", "crop", "num_crops", "stage", "reason", "url_sha", "content_sha"])  # fmt: skip
    return data.to_pylist(), rejects.to_pylist()


def resume_state(output: str, markers: list[dict[str, Any]]) -> ResumeState:
    state = ResumeState()
    if not markers:
        return state
    data, rejects = _committed(output, markers)
    crops_of: dict[str, int] = {}
    done_per_row: Counter[str] = Counter()
    for r in data:
        state.done_crops.add(f"{r['source_id']}#{r['crop_index']}")
        crops_of[r["source_id"]] = r["num_crops"]
        done_per_row[r["source_id"]] += 1
    for r in rejects:
        if r["crop"] is None:
            state.done_rows.add(r["id"])
        else:
            state.done_crops.add(f"{r['id']}#{r['crop']}")
            crops_of[r["id"]] = r["num_crops"]
            done_per_row[r["id"]] += 1
    state.done_rows |= {rid for rid, n in done_per_row.items() if n >= crops_of[rid]}
    for r in data:
        state.url_owners.setdefault(r["url_sha"], r["source_id"]) if r["url_sha"] else None
        state.content_owners.setdefault(r["content_sha"], r["source_id"]) if r["content_sha"] else None
    for r in rejects:
        if r["stage"] == Stage.INPUT:
            continue
        if r["url_sha"] and r["reason"] != Reason.DUPLICATE_URL:
            state.url_owners.setdefault(r["url_sha"], r["id"])
        if r["content_sha"] and r["reason"] != Reason.DUPLICATE_IMAGE:
            state.content_owners.setdefault(r["content_sha"], r["id"])
    return state


def count_input_rows(inputs: Any, read_cfg: Any) -> int:
    from pipelines.dataset.inputs import read_dataset

    return read_dataset(inputs, read_cfg).count()


def accounting(output: str, markers: list[dict[str, Any]], input_rows: int) -> dict[str, Any]:
    data, rejects = _committed(output, markers)
    kept_rows = {r["source_id"] for r in data}
    crop_keys = Counter(f"{r['source_id']}#{r['crop_index']}" for r in data)
    crop_keys.update(f"{r['id']}#{'' if r['crop'] is None else r['crop']}" for r in rejects)
    duplicates = sorted(k for k, n in crop_keys.items() if n > 1)
    row_rejects = [r for r in rejects if r["crop"] is None]
    crop_rejects = [r for r in rejects if r["crop"] is not None]
    rejected_rows = ({r["id"] for r in rejects}) - kept_rows
    num_crops = {r["source_id"]: r["num_crops"] for r in data}
    num_crops.update({r["id"]: r["num_crops"] for r in crop_rejects})
    total_crops = sum(num_crops.values())
    stages = []
    entering = input_rows
    by_stage = defaultdict(Counter)
    for r in row_rejects:
        by_stage[r["stage"]][r["reason"]] += 1
    for stage in ROW_STAGES:
        out = entering - sum(by_stage[stage].values())
        stages.append({"stage": str(stage), "level": "row", "in": entering, "out": out,
                       "yield": round(out / entering, 4) if entering else None, "rejected": dict(by_stage[stage])})  # fmt: skip
        entering = out
    crop_stage = defaultdict(Counter)
    for r in crop_rejects:
        crop_stage[r["stage"]][r["reason"]] += 1
    entering = total_crops
    for stage in CROP_STAGES:
        out = entering - sum(crop_stage[stage].values())
        stages.append({"stage": str(stage), "level": "crop", "in": entering, "out": out,
                       "yield": round(out / entering, 4) if entering else None, "rejected": dict(crop_stage[stage])})  # fmt: skip
        entering = out
    accounted = len(kept_rows) + len(rejected_rows)
    return {
        "input_rows": input_rows, "kept_rows": len(kept_rows), "rejected_rows": len(rejected_rows),
        "accounted_rows": accounted, "complete": accounted == input_rows and not duplicates,
        "crops": total_crops, "kept_crops": len(data), "captions": 2 * len(data), "rejected_crops": len(crop_rejects),
        "duplicate_records": duplicates[:20], "stages": stages,
    }  # fmt: skip


def throughput(markers: list[dict[str, Any]], stages: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    busy: Counter[str] = Counter()
    for m in markers:
        busy.update(m.get("busy_s", {}))
    entering = {s["stage"]: s["in"] for s in stages}
    entering["dedup_url"] = entering.get("dedup", 0)
    entering["dedup_content"] = entering.get("download", 0)
    cpus = {"download": cfg.download.num_cpus, "decode": cfg.decode.num_cpus, "detect": cfg.detect.num_cpus,
            "pose": cfg.pose.num_cpus, "mllm_filter": cfg.filter.num_cpus, "caption": cfg.caption.num_cpus,
            "caption_check": cfg.write.num_cpus, "dedup_url": 0.1, "dedup_content": 0.1}  # fmt: skip
    out = {}
    for stage, seconds in sorted(busy.items()):
        rows = entering.get(stage, 0)
        per_s = rows / seconds if seconds >= 0.01 else None  # below 10 ms the timer says nothing
        per_core = per_s / cpus[stage] if per_s and cpus.get(stage) else None
        out[stage] = {"busy_s": round(seconds, 3), "rows": rows, "rows_per_busy_s": per_s and round(per_s, 2),
                      "num_cpus": cpus.get(stage), "rows_per_s_per_core": per_core and round(per_core, 2)}  # fmt: skip
    return out


def finalize(cfg: Any, inputs: Any, started: float, run_kept: int, run_rejected: int) -> dict[str, Any]:
    output = cfg.output
    markers = read_markers(output)
    input_rows = count_input_rows(inputs, cfg.read)
    stats = accounting(output, markers, input_rows)
    stats["throughput"] = throughput(markers, stats["stages"], cfg)
    previous = storage.join(output, STATS_FILE)
    runs = json.loads(storage.read_bytes(previous)).get("runs", []) if storage.exists(previous) else []
    finished = time.time()
    runs.append({"started": round(started, 3), "finished": round(finished, 3), "wall_s": round(finished - started, 2),
                 "kept_crops_committed": run_kept, "rejects_committed": run_rejected})  # fmt: skip
    stats.update(
        input=cfg.input, output=output, data=storage.join(output, "data"), runs=runs,
        detector=cfg.detect.backend if cfg.detect.enabled else "none",
        mllm={"backend": cfg.mllm.backend, "model": cfg.mllm.model}, shards=len(committed_files(output, markers, "data")),
    )  # fmt: skip
    storage.write_bytes_atomic(previous, json.dumps(stats, indent=1).encode())
    storage.write_bytes_atomic(storage.join(output, REPORT_FILE), report_html(stats, gallery(output, markers, cfg.write.gallery_size)).encode())
    if not stats["complete"]:
        log.error("accounting does not add up: %d input rows, %d accounted, duplicates %s",
                  input_rows, stats["accounted_rows"], stats["duplicate_records"])  # fmt: skip
    return stats


def gallery(output: str, markers: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    items: list[dict[str, Any]] = []
    for uri in committed_files(output, markers, "data"):
        if len(items) >= size:
            break
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs, columns=["image", "image_path", "caption1", "caption2", "source_url",
                                                             "template1", "template2", "det_score"])  # fmt: skip
        items.extend(table.slice(0, size - len(items)).to_pylist())
    return items


def _bar(fraction: float | None) -> str:
    width = 0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar"><div style="width:{width:.1f}%"></div></div>'


def report_html(stats: dict[str, Any], items: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for s in stats["stages"]:
        reasons = ", ".join(f"{e(k)}: {v}" for k, v in sorted(s["rejected"].items(), key=lambda kv: -kv[1])) or "&ndash;"
        y = s["yield"]
        rows.append(f"<tr><td>{e(s['stage'])}</td><td>{s['level']}</td><td>{s['in']}</td><td>{s['out']}</td>"
                    f"<td>{'' if y is None else f'{100 * y:.1f}%'}</td><td>{_bar(y)}</td><td>{reasons}</td></tr>")  # fmt: skip
    speed = "".join(
        f"<tr><td>{e(k)}</td><td>{v['rows']}</td><td>{v['busy_s']}</td><td>{v['rows_per_busy_s']}</td>"
        f"<td>{v['rows_per_s_per_core']}</td></tr>" for k, v in stats["throughput"].items()
    )
    cards = "".join(
        f'<figure><img src="data:image/jpeg;base64,{base64.b64encode(it["image"]).decode()}" alt="{e(it["image_path"])}">'
        f"<figcaption><b>{e(it['image_path'])}</b> (score {it['det_score']:.2f}; templates {e(str(it['template1']))}, "
        f"{e(str(it['template2']))})<br>1: {e(it['caption1'])}<br>2: {e(it['caption2'])}</figcaption></figure>"
        for it in items
    )
    overall = stats["kept_rows"] / stats["input_rows"] if stats["input_rows"] else None
    status = "complete: every input row is accounted for" if stats["complete"] else "INCOMPLETE or inconsistent"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>WebPerson build report</title><style>
body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} .bar{{width:160px;background:#eee;height:12px}}
.bar div{{background:#3a7;height:12px}} figure{{display:inline-block;width:260px;vertical-align:top;margin:6px;
font-size:12px}} figure img{{max-height:220px;max-width:120px;float:left;margin-right:6px}}</style></head><body>
<h1>WebPerson build report</h1>
<p>{e(status)}. Input <code>{e(str(stats['input']))}</code>, output <code>{e(str(stats['output']))}</code>;
detector {e(str(stats['detector']))}; MLLM {e(str(stats['mllm']['backend']))} <code>{e(str(stats['mllm']['model']))}</code>.</p>
<p>{stats['input_rows']} input rows: {stats['kept_rows']} kept ({'' if overall is None else f'{100 * overall:.1f}%'}),
{stats['rejected_rows']} rejected; {stats['crops']} person crops, {stats['kept_crops']} kept with
{stats['captions']} captions in {stats['shards']} shards; {len(stats['runs'])} run(s).</p>
<h2>Yield per stage</h2><table><tr><th>stage</th><th>level</th><th>in</th><th>out</th><th>yield</th><th></th>
<th>rejected by reason</th></tr>{''.join(rows)}</table>
<h2>Throughput (busy time of the stage's tasks and actors)</h2><table><tr><th>stage</th><th>rows</th>
<th>busy s</th><th>rows / busy s</th><th>rows / s / core</th></tr>{speed}</table>
<h2>Sample of kept crops</h2>{cards or '<p>none kept</p>'}
</body></html>"""

