"""A nasty web corpus for the dataset pipeline: a COYO-style table of {id, url, text} and the files.

`build_web_corpus(out, cfg, seed)` writes into folder `out`:
- the files under img/, photo/ and page/, and `behaviours.json`, the per-path misbehaviour that
  `gadms.testing.http_server.MisbehavingHTTPServer(out)` reads: serving the folder reproduces every
  case (404s, 500s, slow answers, truncated transfers, redirect loops and chains, noai headers);
- `corpus.parquet` and `corpus.jsonl`: the same rows, each with the COYO columns `id`, `url`,
  `text` and the ground truth a correct pipeline must reproduce: `case`, `expected` (kept or
  rejected), `expected_stage`, `expected_reason` (see web_outcomes), `expected_crops`, `duplicate_of`,
  `image_size` (decoded, upright; null when the row never decodes) and `persons` (box, verdict and
  COCO keypoints of each person in the image, for rows that reach person detection);
- `corpus.json`: the base URL, the `WebPolicy` the expectations assume, the case catalogue, counts.

URLs are absolute, built on `cfg.base_url`. The test server picks a free port at start, so either
generate with its `base_url`, or call `rebase_web_corpus(out, server.base_url)` afterwards; URLs
that point elsewhere (blocked addresses, other schemes) are left alone.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gadms import storage
from gadms.errors import UserError
from gadms.synth.attributes import Identity, sample_identity
from gadms.synth.config import WebCorpusConfig
from gadms.synth.scenes import ScenePerson, render_scene
from gadms.synth.web_files import (
    BOMB_SIDE, corrupt_png, decompression_bomb_png, encode_variant, noise_png, tracking_pixel_gif,
)  # fmt: skip
from gadms.synth.web_outcomes import CASES, Stage, Verdict
from gadms.synth.world import stream_rng
from gadms.testing.http_server import MANIFEST_NAME, Behaviour

TABLE_PARQUET, TABLE_JSONL, META_JSON = "corpus.parquet", "corpus.jsonl", "corpus.json"
PERSON_TYPE = pa.struct([("pid", pa.int64()), ("box", pa.list_(pa.int32())), ("verdict", pa.string()),
                         ("keypoints", pa.list_(pa.float32()))])  # fmt: skip
CORPUS_SCHEMA = pa.schema([
    ("id", pa.int64()), ("url", pa.string()), ("text", pa.string()), ("case", pa.string()),
    ("expected", pa.string()), ("expected_stage", pa.string()), ("expected_reason", pa.string()),
    ("expected_crops", pa.int32()), ("duplicate_of", pa.int64()), ("image_size", pa.list_(pa.int32())),
    ("persons", pa.list_(PERSON_TYPE)),
])  # fmt: skip
BAD_SCHEME_URLS = (
    "ftp://files.example.com/people/p1.jpg",
    "file:///etc/passwd",
    "data:image/png;base64,iVBORw0KGgo=",
)
BLOCKED_URLS = (
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://10.0.0.7/photos/team.jpg",
    "http://192.168.1.20/cam/snapshot.jpg",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
)
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
ALT_TEXTS = (
    "IMG_{n}.JPG", "", "Stock photo: pedestrians downtown", "Free shipping on all orders over 50 dollars",
    "street style", "City life #{n}", "Photo by a reader", "Straßenszene am Nachmittag", "DSC{n}",
)  # fmt: skip
KEPT_VARIANT_CASES = (  # (case, encoding) of the kept rows that test decoding
    ("scene_gif", "gif"), ("grayscale_jpeg", "grayscale_jpeg"), ("palette_png", "palette_png"),
    ("cmyk_jpeg", "cmyk_jpeg"), ("png_16bit", "png_16bit"), ("rgba_png", "rgba_png"),
    ("exif_rotated", "exif_rotated"), ("animated_gif", "animated_gif"), ("animated_webp", "animated_webp"),
)  # fmt: skip
REJECTED_SCENE_CASES = (  # (case, scene kind) of the rows rejected at person detection or pose
    ("no_person", "empty"), ("small_people_only", "small_only"), ("lying_person", "lying"),
    ("head_cropped", "head_cropped"),
)  # fmt: skip


@dataclass(eq=False)
class _Row:
    case: str
    url: str
    path: str | None = None  # the served file, when there is one
    image_size: tuple[int, int] | None = None
    persons: list[ScenePerson] = field(default_factory=list)
    duplicate_of: int | None = None  # index of the original in the row list (becomes its id)
    text: str = ""


class _CorpusBuilder:
    """Accumulates files, behaviours and rows; every random choice comes from one seeded stream."""

    def __init__(self, out: str, cfg: WebCorpusConfig, seed: int) -> None:
        self.out, self.cfg, self.seed = out, cfg, seed
        self.rng = stream_rng(seed, "web")
        self.files: dict[str, bytes] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.rows: list[_Row] = []
        self.duplicates: list[_Row] = []
        self.people_by_pid: dict[int, Identity] = {}
        self._serial = 0

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def url(self, path: str, query: str = "") -> str:
        return f"{self.cfg.base_url}/{quote(path)}" + (f"?{query}" if query else "")

    def add_file(self, path: str, data: bytes, behaviour: Behaviour | None = None) -> str:
        if path in self.files:
            raise ValueError(f"two corpus files at {path}")
        self.files[path] = data
        if behaviour is not None:
            self.behaviours["/" + path] = behaviour
        return path

    def people(self, n: int) -> list[Identity]:
        start = len(self.people_by_pid)
        new = [sample_identity(stream_rng(self.seed, "web/people", i), i) for i in range(start, start + n)]
        self.people_by_pid.update((p.pid, p) for p in new)
        return new

    def scene(self, kind: str = "people") -> tuple[Image.Image, list[ScenePerson]]:
        return render_scene(self.rng, self.people(4), kind, self.cfg.policy)

    def add_row(self, case: str, url: str, size: tuple[int, int] | None = None,
                persons: list[ScenePerson] | None = None, path: str | None = None) -> _Row:  # fmt: skip
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}")
        row = _Row(case, url, path, size, persons or [])
        self.rows.append(row)
        return row

    def image_row(
        self,
        case: str,
        variant: str = "jpeg",
        kind: str = "people",
        behaviour: Behaviour | None = None,
        keep_truth: bool = True,
    ) -> tuple[_Row, str]:
        """A scene encoded as `variant`, stored and listed; returns the row and the file path.

        `keep_truth=False` for rows rejected before decoding: their size and people are not recorded."""
        image, persons = self.scene(kind)
        data, ext = encode_variant(image, variant)
        path = self.add_file(f"img/p{self.serial():05d}.{ext}", data, behaviour)
        if not keep_truth:
            return self.add_row(case, self.url(path), path=path), path
        return self.add_row(case, self.url(path), image.size, persons, path), path


def _build_rows(b: _CorpusBuilder) -> None:
    cfg = b.cfg
    originals = [b.image_row("scene", ("jpeg", "png", "webp")[i % 3])[0] for i in range(cfg.scenes)]
    for _ in range(cfg.copies):
        for case, variant in KEPT_VARIANT_CASES:
            b.image_row(case, variant)
        b.image_row("slow_ok", behaviour=Behaviour(delay_s=cfg.ok_delay_s))
        row, path = b.image_row("redirect_ok")
        redirect = f"go/{b.serial():05d}"
        b.behaviours["/" + redirect] = Behaviour(redirect_to="/" + path)
        row.url = b.url(redirect)
        image, persons = b.scene()
        path = b.add_file(f"img/street photo {b.serial()}.jpg", encode_variant(image, "jpeg")[0])
        b.add_row("escaped_url", b.url(path, "w=800&h=600"), image.size, persons)
        image, persons = b.scene()
        jpeg = encode_variant(image, "jpeg")[0]
        path = b.add_file(f"photo/{8_800_000 + b.serial()}", jpeg, Behaviour(content_type="image/jpeg"))
        b.add_row("no_extension", b.url(path), image.size, persons)
        image, persons = b.scene()
        png = encode_variant(image, "png")[0]
        path = b.add_file(f"img/p{b.serial():05d}.jpg", png)  # served as image/jpeg
        b.add_row("mislabelled_type", b.url(path), image.size, persons)
        _add_download_failures(b)
        _add_decode_failures(b)
        for case, kind in REJECTED_SCENE_CASES:
            b.image_row(case, kind=kind)
        _add_duplicates(b, originals)


def _add_duplicates(b: _CorpusBuilder, originals: list[_Row]) -> None:
    """One row with a kept row's URL, one with a byte-identical copy of a kept row's file."""
    original = originals[int(b.rng.integers(len(originals)))]
    index = _position(b.rows, original)
    truth = (original.image_size, original.persons, index)
    b.duplicates.append(_Row("duplicate_url", original.url, original.path, *truth))
    original = originals[int(b.rng.integers(len(originals)))]
    index = _position(b.rows, original)
    assert original.path is not None
    copy = b.add_file(f"img/p{b.serial():05d}.{original.path.rsplit('.', 1)[-1]}", b.files[original.path])
    truth = (original.image_size, original.persons, index)
    b.duplicates.append(_Row("duplicate_image", b.url(copy), copy, *truth))


def _add_download_failures(b: _CorpusBuilder) -> None:
    cfg = b.cfg
    for url in BAD_SCHEME_URLS:
        b.add_row("bad_scheme", url)
    for url in BLOCKED_URLS:
        b.add_row("blocked_address", url)
    path = f"go/{b.serial():05d}"
    b.behaviours["/" + path] = Behaviour(redirect_to=METADATA_URL)
    b.add_row("redirect_to_blocked", b.url(path))
    b.image_row("http_404", behaviour=Behaviour(status=404), keep_truth=False)
    b.add_row("http_404", b.url(f"img/p{b.serial():05d}.jpg"))  # no such file at all
    b.image_row("http_500", behaviour=Behaviour(status=500), keep_truth=False)
    b.image_row("slow", behaviour=Behaviour(delay_s=cfg.slow_delay_s), keep_truth=False)
    path = f"go/{b.serial():05d}"
    b.behaviours["/" + path] = Behaviour(redirect_loop=True)
    b.add_row("redirect_loop", b.url(path))
    row, target = b.image_row("redirect_chain", keep_truth=False)
    chain = [f"go/{b.serial():05d}" for hop in range(cfg.policy.max_redirects + 1)]
    for here, there in zip(chain, [*chain[1:], target]):  # max_redirects + 1 redirects in a row
        b.behaviours["/" + here] = Behaviour(redirect_to="/" + there)
    row.url = b.url(chain[0])
    row, path = b.image_row("truncated_transfer", keep_truth=False)
    b.behaviours["/" + path] = Behaviour(truncate_at=len(b.files[path]) // 3)
    too_large = noise_png(b.rng, int(cfg.policy.max_body_bytes * 1.25))
    b.add_row("too_large", b.url(b.add_file(f"img/p{b.serial():05d}.png", too_large)))
    page = (
        "<!doctype html><html><head><title>Gallery</title></head>\n"
        '<body><img src="/img/x.jpg"></body></html>\n'
    )
    b.add_row("html_page", b.url(b.add_file(f"page/gallery_{b.serial():05d}.html", page.encode())))
    error = b'{"error": "rate limit exceeded", "retry_after": 30}\n'
    b.add_row("text_as_jpeg", b.url(b.add_file(f"img/p{b.serial():05d}.jpg", error)))
    b.add_row("empty_body", b.url(b.add_file(f"img/p{b.serial():05d}.jpg", b"")))
    for tag in ("noai", "noimageai"):
        b.image_row("robots_noai", behaviour=Behaviour(headers={"X-Robots-Tag": tag}), keep_truth=False)


def _add_decode_failures(b: _CorpusBuilder) -> None:
    for variant in ("jpeg", "png"):
        row, path = b.image_row("truncated_file", variant, keep_truth=False)
        b.files[path] = b.files[path][: len(b.files[path]) // 2]
    row, path = b.image_row("corrupt_png", "png", keep_truth=False)
    b.files[path] = corrupt_png(b.files[path])
    b.add_row("decompression_bomb", b.url(b.add_file(f"img/p{b.serial():05d}.png", decompression_bomb_png())),
              (BOMB_SIDE, BOMB_SIDE))  # fmt: skip
    b.add_row("too_small", b.url(b.add_file(f"img/p{b.serial():05d}.gif", tracking_pixel_gif())), (1, 1))
    thumb = b.scene()[0].resize((40, 30), Image.Resampling.BILINEAR)
    thumb_path = b.add_file(f"img/p{b.serial():05d}.jpg", encode_variant(thumb, "jpeg")[0])
    b.add_row("too_small", b.url(thumb_path), (40, 30))
    for (w, h), variant in (((1600, 200), "png"), ((150, 1200), "jpeg")):
        strip = b.scene("empty")[0].resize((w, h), Image.Resampling.BILINEAR)
        data, ext = encode_variant(strip, variant)
        b.add_row("extreme_aspect", b.url(b.add_file(f"img/p{b.serial():05d}.{ext}", data)), (w, h))


def _alt_text(rng: np.random.Generator, row: _Row, people: dict[int, Identity]) -> str:
    croppable = [p for p in row.persons if p.verdict == Verdict.CROP]
    if croppable and rng.random() < 0.5:  # like real alt text: sometimes describes the photo, loosely
        who = people.get(croppable[0].pid)
        if who is not None:
            return f"{who.gender} in a {who.top_colour} {who.top_type} in the city"
    pick = ALT_TEXTS[int(rng.integers(len(ALT_TEXTS)))]
    return pick.format(n=int(rng.integers(1000, 9999)))


def _ordered_rows(b: _CorpusBuilder) -> list[_Row]:
    """Shuffle, then put each duplicate somewhere after its original (the lower id is the one kept).

    On return `duplicate_of` holds the original's final position, which is its id."""
    rows = [b.rows[i] for i in b.rng.permutation(len(b.rows))]
    originals = {id(dup): b.rows[dup.duplicate_of] for dup in b.duplicates}  # type: ignore[index]
    for dup in b.duplicates:
        at = int(b.rng.integers(_position(rows, originals[id(dup)]) + 1, len(rows) + 1))
        rows.insert(at, dup)
    for dup in b.duplicates:
        dup.duplicate_of = _position(rows, originals[id(dup)])
    return rows


def _position(rows: list[_Row], row: _Row) -> int:
    return next(i for i, r in enumerate(rows) if r is row)  # identity, not equality: rows may look alike


def _record(index: int, row: _Row) -> dict[str, Any]:
    case = CASES[row.case]
    reaches_detection = case.reason is None or case.stage in (Stage.DETECT, Stage.POSE)
    persons = [p.to_dict() for p in row.persons] if reaches_detection else []
    return {
        "id": index,
        "url": row.url,
        "text": row.text,
        "case": row.case,
        "expected": case.outcome,
        "expected_stage": None if case.stage is None else str(case.stage),
        "expected_reason": None if case.reason is None else str(case.reason),
        "expected_crops": sum(p["verdict"] == Verdict.CROP for p in persons) if case.reason is None else 0,
        "duplicate_of": row.duplicate_of,
        "image_size": list(row.image_size) if row.image_size else None,
        "persons": persons,
    }


def _table_bytes(records: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=CORPUS_SCHEMA), buffer)
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    return buffer.getvalue(), jsonl


def _manifest_bytes(behaviours: dict[str, Behaviour]) -> bytes:
    """The same JSON as gadms.testing.http_server.write_manifest, written through gadms.storage."""
    return json.dumps({p: b.to_dict() for p, b in sorted(behaviours.items())}, indent=1).encode()


def build_web_corpus(out: str, cfg: WebCorpusConfig, seed: int) -> dict[str, Any]:
    """Write the corpus folder (see the module docstring); returns the summary stored in corpus.json."""
    b = _CorpusBuilder(str(out).rstrip("/"), cfg, seed)
    _build_rows(b)
    rows = _ordered_rows(b)
    for row in rows:
        row.text = _alt_text(b.rng, row, b.people_by_pid)
    records = [_record(i, row) for i, row in enumerate(rows)]
    for path, data in sorted(b.files.items()):
        storage.write_bytes_atomic(storage.join(b.out, path), data)
    storage.write_bytes_atomic(storage.join(b.out, MANIFEST_NAME), _manifest_bytes(b.behaviours))
    meta = _meta(cfg, records)
    _write_tables(b.out, records, meta)
    return meta


def _meta(cfg: WebCorpusConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["case"]] = counts.get(r["case"], 0) + 1
    return {
        "base_url": cfg.base_url,
        "policy": cfg.policy.model_dump(mode="json"),
        "slow_delay_s": cfg.slow_delay_s,
        "ok_delay_s": cfg.ok_delay_s,
        "rows": len(records),
        "kept": sum(r["expected"] == "kept" for r in records),
        "rejected": sum(r["expected"] == "rejected" for r in records),
        "expected_crops": sum(r["expected_crops"] for r in records),
        "case_counts": dict(sorted(counts.items())),
        "cases": {c.name: {"description": c.description, "expected": c.outcome,
                           "stage": None if c.stage is None else str(c.stage),
                           "reason": None if c.reason is None else str(c.reason)} for c in CASES.values()},
    }  # fmt: skip


def _write_tables(out: str, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    parquet, jsonl = _table_bytes(records)
    storage.write_bytes_atomic(storage.join(out, TABLE_PARQUET), parquet)
    storage.write_bytes_atomic(storage.join(out, TABLE_JSONL), jsonl)
    storage.write_bytes_atomic(storage.join(out, META_JSON), json.dumps(meta, indent=1).encode())


def read_web_corpus(folder: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows (from corpus.jsonl) and the metadata of a corpus folder."""
    meta_uri = storage.join(str(folder), META_JSON)
    if not storage.exists(meta_uri):
        raise UserError(f"{folder}: not a web corpus folder (no {META_JSON})")
    meta = json.loads(storage.read_bytes(meta_uri))
    lines = storage.read_bytes(storage.join(str(folder), TABLE_JSONL)).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()], meta


def rebase_web_corpus(folder: str, base_url: str) -> None:
    """Point every URL on the corpus server at `base_url` (e.g. the test server's), in place."""
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"base URL {base_url!r}: must start with http:// or https://")
    records, meta = read_web_corpus(folder)
    old, new = meta["base_url"].rstrip("/") + "/", base_url.rstrip("/") + "/"
    for record in records:
        if record["url"].startswith(old):
            record["url"] = new + record["url"][len(old) :]
    meta["base_url"] = base_url.rstrip("/")
    _write_tables(str(folder).rstrip("/"), records, meta)
