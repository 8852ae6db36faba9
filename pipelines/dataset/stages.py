"""The stages as plain Python over lists of row dicts (no Ray here; `job.py` wraps them).

Every function takes a batch, works only on rows whose status is "ok", and marks failures with
`records.reject` (stage, reason, detail) instead of raising: a bad row never stops the job.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from pipelines.dataset.config import (
    CaptionCheckConfig, CaptionConfig, DecodeConfig, DetectConfig, DownloadConfig, FilterConfig, MLLMConfig,
    PoseConfig, ReadConfig,
)  # fmt: skip
from pipelines.dataset.decode import decode_image
from pipelines.dataset.detect import Detection, Detector, box_verdict, crop_box, pose_verdict
from pipelines.dataset.download import fetch, redact_url
from pipelines.dataset.mllm import Generation, Request, shrink
from pipelines.dataset.outcomes import Reason, Rejected, Stage
from pipelines.dataset.prompts import VerdictError, caption_prompt, filter_prompt, parse_verdict, verdict_choices
from pipelines.dataset.records import OK, REJECTED, add_busy, reject, url_digest
from pipelines.dataset.templates import Template, draw_templates, request_seed
from pipelines.dataset.validate import check_caption

log = logging.getLogger(__name__)
Row = dict[str, Any]


def live(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == OK]


def timed(stage: str):
    """Decorator: add the batch's wall time to its live rows' busy seconds for `stage`."""

    def wrap(fn):
        def inner(rows: list[Row], *args: Any, **kwargs: Any) -> list[Row]:
            start = time.perf_counter()
            out = fn(rows, *args, **kwargs)
            add_busy(live(out) or out, stage, time.perf_counter() - start)
            return out

        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner

    return wrap


# ---------------------------------------------------------------- input


def _image_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, dict):  # Hugging Face `datasets` Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    return bytes(value) if value else None


def normalize_input(raw: list[Row], cfg: ReadConfig, kind: str) -> list[Row]:
    """Reader rows -> pipeline rows: stable string id, redacted url, optional bytes and detections."""
    out = []
    for r in raw:
        if kind == "images":
            body, url, text = _image_bytes(r.get("bytes")), str(r.get("path") or ""), None
            rid = r.get("path")
        else:
            body = _image_bytes(r.get(cfg.image_column))
            url = r.get(cfg.url_column)
            url = redact_url(str(url).strip()) if url is not None and str(url).strip() else ""
            text = r.get(cfg.text_column)
            rid = r.get(cfg.id_column)
        if rid is None or str(rid) == "":
            rid = "u" + url_digest(url) if url else "b" + hashlib.blake2b(body or b"", digest_size=12).hexdigest()
        persons = r.get(cfg.persons_column) if kind != "images" else None
        row: Row = {"id": str(rid), "url": url, "text": None if text is None else str(text),
                    "source_file": r.get("path") if kind != "images" else None, "url_sha": url_digest(url) if url else None,
                    "status": OK, "body": body, "persons": None if persons is None else json.dumps(_plain(persons))}  # fmt: skip
        if not url and body is None:
            reject(row, Stage.INPUT, Reason.MISSING_URL, f"no {cfg.url_column!r} and no {cfg.image_column!r} bytes")
        out.append(row)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------- dedup (ordered, stateful)


class Registry:
    """First-come registry of ids and URL digests; run as ONE actor over the stream in input order.

    `seed` holds the digests (-> owner id) of rows committed by earlier runs, so a resumed run makes
    the decisions an uninterrupted run would: a row is a duplicate only of a *different* owner."""

    def __init__(self, what: str, seed: dict[str, str] | None = None, check_ids: bool = False) -> None:
        if what not in ("url", "content"):
            raise ValueError(what)
        self.what = what
        self.owners: dict[str, str] = dict(seed or {})
        self.check_ids = check_ids
        self.ids: set[str] = set()

    def __call__(self, rows: list[Row]) -> list[Row]:
        start = time.perf_counter()
        for row in rows:
            if self.check_ids:
                if row["id"] in self.ids:
                    if row["status"] == OK:
                        reject(row, Stage.INPUT, Reason.DUPLICATE_ID, f"id {row['id']!r} repeats")
                    continue
                self.ids.add(row["id"])
            if row["status"] != OK:
                continue
            digest = row.get("url_sha") if self.what == "url" else row.get("content_sha")
            if not digest:
                continue
            owner = self.owners.setdefault(digest, row["id"])
            if owner != row["id"]:
                reason = Reason.DUPLICATE_URL if self.what == "url" else Reason.DUPLICATE_IMAGE
                reject(row, Stage.DEDUP, reason, f"same {self.what} as row {owner}", duplicate_of=owner)
        add_busy(live(rows) or rows, f"dedup_{self.what}", time.perf_counter() - start)
        return rows


# ---------------------------------------------------------------- download


def _download_one(row: Row, cfg: DownloadConfig) -> None:
    try:
        fetched = fetch(row["url"], cfg)
    except Rejected as err:
        reject(row, Stage.DOWNLOAD, err.reason, err.detail)
        return
    except Exception as err:  # an unexpected client failure is this row's problem, not the job's
        log.warning("download of row %s failed unexpectedly: %r", row["id"], err)
        reject(row, Stage.DOWNLOAD, Reason.CONNECTION_ERROR, f"{err.__class__.__name__}: {err}"[:300])
        return
    row["body"] = fetched.body


@timed("download")
def download_rows(rows: list[Row], cfg: DownloadConfig, enabled: bool = True) -> list[Row]:
    todo = [r for r in live(rows) if r.get("body") is None]
    if todo and not enabled:
        for row in todo:
            reject(row, Stage.DOWNLOAD, Reason.MISSING_URL, "download stage disabled and the row has no image bytes")
        todo = []
    if todo:
        with ThreadPoolExecutor(max_workers=min(cfg.threads, len(todo))) as pool:
            list(pool.map(lambda r: _download_one(r, cfg), todo))
    for row in live(rows):
        row["content_sha"] = hashlib.sha256(row["body"]).hexdigest()
    return rows


# ---------------------------------------------------------------- decode


@timed("decode")
def decode_rows(rows: list[Row], cfg: DecodeConfig) -> list[Row]:
    for row in live(rows):
        try:
            image = decode_image(row["body"], cfg, checks=cfg.enabled)
        except Rejected as err:
            reject(row, Stage.DECODE, err.reason, err.detail)
            continue
        row["width"], row["height"] = image.size
        row["pixels"] = np.asarray(image, dtype=np.uint8).tobytes()
        row["body"] = None
    return rows


def row_image(row: Row) -> Image.Image:
    arr = np.frombuffer(row["pixels"], dtype=np.uint8).reshape(row["height"], row["width"], 3)
    return Image.fromarray(arr, "RGB")


# ---------------------------------------------------------------- detect and pose


def _det_json(det: Detection, threshold: float) -> dict[str, Any]:
    kp = det.keypoints.astype(np.float32).copy()
    kp[:, 2] = (kp[:, 2] > threshold).astype(np.float32)  # visibility as 0/1 with the backend's threshold
    return {"box": [round(float(v), 2) for v in det.box], "score": round(float(det.score), 5),
            "keypoints": [round(float(v), 2) for v in kp.reshape(-1)]}  # fmt: skip


@timed("detect")
def detect_rows(rows: list[Row], detector: Detector | None, cfg: DetectConfig) -> list[Row]:
    todo = live(rows)
    if detector is None:  # detection switched off: the whole image is the crop
        for row in todo:
            det = Detection((0.0, 0.0, float(row["width"]), float(row["height"])), 1.0)
            row["detections"] = json.dumps([_det_json(det, 0.5)])
            row["boxes_seen"] = row["boxes_kept"] = 1
        return rows
    records = [{"id": r["id"], "persons": json.loads(r["persons"]) if r.get("persons") else None} for r in todo]
    images = [row_image(r) for r in todo] if detector.name != "precomputed" else [None] * len(todo)
    results = detector.detect(images, records)
    for row, dets in zip(todo, results):
        dets = sorted(dets, key=lambda d: -d.score)[: cfg.max_people]
        verdicts = [box_verdict(d, cfg) for d in dets]
        kept = sorted((d for d, v in zip(dets, verdicts) if v is None), key=lambda d: (d.box[0], d.box[1]))
        row["boxes_seen"], row["boxes_kept"] = len(dets), len(kept)
        if not kept:
            counts = Counter(v for v in verdicts if v)
            detail = f"{len(dets)} person boxes" + (f": {dict(counts)}" if counts else "")
            reject(row, Stage.DETECT, Reason.NO_PERSON, detail)
            continue
        row["detections"] = json.dumps([_det_json(d, detector.keypoint_threshold) for d in kept])
    return rows


def encode_crop(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality)
    else:
        image.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()


def _crop_row(row: Row, **fields: Any) -> Row:
    keep = ("id", "url", "text", "source_file", "url_sha", "content_sha", "status", "stage", "reason", "detail",
            "duplicate_of", "busy", "width", "height")  # fmt: skip
    return {**{k: row.get(k) for k in keep}, **fields}


def pose_rows(rows: list[Row], cfg: PoseConfig, enabled: bool = True,
              done_crops: frozenset[str] | set[str] = frozenset()) -> list[Row]:  # fmt: skip
    """Row records -> crop records: the keypoint rules, then one crop per passing person.

    Rows rejected earlier become one crop-layout record with crop = None. Crops whose key is in
    `done_crops` (committed by an earlier run) are left out."""
    start = time.perf_counter()
    out: list[Row] = []
    for row in rows:
        if row["status"] != OK:
            out.append(_crop_row(row, crop=None, num_crops=None))
            continue
        dets = json.loads(row["detections"])
        passing, failures = [], Counter()
        for det in dets:
            d = Detection(tuple(det["box"]), det["score"], np.asarray(det["keypoints"], np.float32).reshape(-1, 3))
            why = pose_verdict(d, cfg, 0.5) if enabled else None
            if why:
                failures[why] += 1
            else:
                passing.append(d)
        if not passing:
            rejected = _crop_row(row, crop=None, num_crops=None)
            reject(rejected, Stage.POSE, Reason.POSE_CHECK, f"{len(dets)} boxes fail: {dict(failures)}")
            out.append(rejected)
            continue
        image = row_image(row)
        for index, det in enumerate(passing):
            if f"{row['id']}#{index}" in done_crops:
                continue
            x0, y0, x1, y1 = crop_box(det, image.size, cfg.crop_margin)
            crop = image.crop((x0, y0, x1, y1))
            kp = det.keypoints
            out.append(_crop_row(row, crop=index, num_crops=len(passing), box=[float(v) for v in det.box],
                                 det_score=float(det.score), keypoints_visible=int((kp[:, 2] > 0.5).sum()),
                                 keypoints=[float(v) for v in kp.reshape(-1)],
                                 image=encode_crop(crop, cfg.crop_format, cfg.crop_quality)))  # fmt: skip
    add_busy(live(out) or out, "pose", time.perf_counter() - start)
    return out


# ---------------------------------------------------------------- MLLM requests and answers


def crop_key(row: Row) -> str:
    return f"{row['id']}#{row['crop']}"


def crop_image(row: Row, max_side: int) -> Image.Image:
    with Image.open(io.BytesIO(row["image"])) as image:
        return shrink(image.convert("RGB"), max_side)


def filter_request(row: Row, mllm: MLLMConfig, cfg: FilterConfig, image: Image.Image | None = None) -> Request:
    key = crop_key(row)
    return Request(key, image if image is not None else crop_image(row, mllm.image_max_side), filter_prompt(),
                   request_seed(mllm.seed, key, "filter"), cfg.max_tokens, cfg.temperature, 1.0,
                   tuple(verdict_choices()) if cfg.guided else None)  # fmt: skip


def apply_verdict(row: Row, generation: Generation) -> None:
    row["filter_raw"] = generation.text[:2000]
    if generation.error:
        reject(row, Stage.MLLM_FILTER, Reason.GENERATION_ERROR, generation.error)
        return
    try:
        verdict = parse_verdict(generation.text)
    except VerdictError as err:
        reject(row, Stage.MLLM_FILTER, Reason.FILTER_UNPARSEABLE, f"{err}; answer {generation.text[:120]!r}")
        return
    row["verdict"] = json.dumps(verdict.values)
    if not verdict.passed:
        reject(row, Stage.MLLM_FILTER, verdict.reason, json.dumps(verdict.values))


def filter_rows(rows: list[Row], backend: Any, mllm: MLLMConfig, cfg: FilterConfig) -> list[Row]:
    start = time.perf_counter()
    todo = live(rows)
    for row, generation in zip(todo, backend.generate([filter_request(r, mllm, cfg) for r in todo])):
        apply_verdict(row, generation)
    add_busy(todo, "mllm_filter", time.perf_counter() - start)
    return rows


def caption_requests(row: Row, bank: list[Template], mllm: MLLMConfig, cfg: CaptionConfig,
                     image: Image.Image | None = None) -> list[Request]:  # fmt: skip
    key = crop_key(row)
    image = image if image is not None else crop_image(row, mllm.image_max_side)
    templates = draw_templates(bank, mllm.seed, key, 2)
    row["template1"], row["template2"] = templates[0].id, templates[1].id
    requests = [Request(key, image, caption_prompt(t.text, cfg.max_words), request_seed(mllm.seed, key, f"caption{i}"),
                        cfg.max_tokens, cfg.temperature, cfg.top_p) for i, t in enumerate(templates, 1)]  # fmt: skip
    row["caption_settings"] = json.dumps({
        "backend": mllm.backend, "model": mllm.model, "temperature": cfg.temperature, "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens, "max_words": cfg.max_words, "seeds": [r.seed for r in requests],
    })  # fmt: skip
    return requests


def apply_caption(row: Row, number: int, generation: Generation) -> None:
    if row["status"] != OK:
        return
    if generation.error:
        reject(row, Stage.CAPTION, Reason.GENERATION_ERROR, f"caption{number}: {generation.error}")
        return
    row[f"caption{number}"] = generation.text
    row[f"finish{number}"] = generation.finish_reason


def caption_rows(rows: list[Row], backend: Any, bank: list[Template], mllm: MLLMConfig, cfg: CaptionConfig) -> list[Row]:
    start = time.perf_counter()
    todo = live(rows)
    requests = [req for row in todo for req in caption_requests(row, bank, mllm, cfg)]
    generations = backend.generate(requests)
    for i, row in enumerate(todo):
        apply_caption(row, 1, generations[2 * i])
        apply_caption(row, 2, generations[2 * i + 1])
    add_busy(todo, "caption", time.perf_counter() - start)
    return rows


@timed("caption_check")
def check_rows(rows: list[Row], cfg: CaptionCheckConfig) -> list[Row]:
    for row in live(rows):
        for number in (1, 2):
            try:
                row[f"caption{number}"] = check_caption(row.get(f"caption{number}") or "", cfg, row.get(f"finish{number}"))
            except Rejected as err:
                reject(row, Stage.CAPTION_CHECK, err.reason, f"caption{number}: {err.detail}".strip())
                break
    return rows


def rejected_only(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == REJECTED]
