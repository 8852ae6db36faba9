"""The web corpus: every bad case of the issue is there, the ground truth is consistent, and the HTTP
fixture serving the folder behaves exactly as each row says."""

from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import shutil
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps
from synth_world import smoke_config, smoke_world  # noqa: F401  (fixtures)

from gadms.synth.config import WebPolicy
from gadms.synth.scenes import EDGE_MARGIN, person_verdict
from gadms.synth.web_corpus import TABLE_PARQUET, read_web_corpus, rebase_web_corpus
from gadms.synth.web_files import png_declared_size
from gadms.synth.web_outcomes import CASES, REASON_STAGE, Reason, Verdict
from gadms.testing.http_server import MisbehavingHTTPServer, read_manifest

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # the whole announced Content-Length arrived


def get(url: str, timeout: float = 3.0) -> Answer:
    """One GET, no redirect following, partial bodies kept (what a careful downloader sees)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            body, complete = response.read(), True
        except http.client.IncompleteRead as err:
            body, complete = err.partial, False
        return Answer(response.status, headers, body, complete)
    finally:
        conn.close()


def follow(url: str, base: str, limit: int = 10) -> tuple[Answer, int]:
    """Follow redirects on the corpus server; returns the last answer and the number of redirects."""
    for hops in range(limit + 1):
        answer = get(url)
        if answer.status != 302:
            return answer, hops
        url = base + answer.headers["location"]
    raise AssertionError(f"more than {limit} redirects from {url}")


def upright_first_frame(data: bytes) -> Image.Image:
    """Decoded as a correct pipeline must: first frame, EXIF orientation applied, 16-bit scaled to 8-bit."""
    image = Image.open(io.BytesIO(data))
    image.seek(0)
    if image.mode in ("I;16", "I"):  # PIL's convert("RGB") would clip every value above 255 to white
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) // 257).astype(np.uint8), "L")
    return ImageOps.exif_transpose(image)


@pytest.fixture
def corpus(
    smoke_world: Path, http_root: Path, http_server: MisbehavingHTTPServer  # noqa: F811
) -> tuple[list[dict], dict, MisbehavingHTTPServer]:
    """The smoke corpus copied into the served folder and pointed at the server's port."""
    shutil.copytree(smoke_world / "web", http_root, dirs_exist_ok=True)
    rebase_web_corpus(str(http_root), http_server.base_url)
    rows, meta = read_web_corpus(str(http_root))
    return rows, meta, http_server


def test_every_bad_case_of_the_issue_is_in_the_corpus(smoke_world: Path) -> None:  # noqa: F811
    rows, meta = read_web_corpus(str(smoke_world / "web"))
    cases = {r["case"] for r in rows}
    assert cases == set(CASES) and {r["expected_reason"] for r in rows} - {None} == {str(r) for r in Reason}
    kept = [r for r in rows if r["expected"] == "kept"]
    assert any(len(r["persons"]) >= 2 for r in kept) and all(r["expected_crops"] >= 1 for r in kept)
    sizes = {tuple(r["image_size"]) for r in rows if r["case"] == "extreme_aspect"}
    assert any(w > 4 * h for w, h in sizes) and any(h > 4 * w for w, h in sizes)  # very wide AND very tall
    extensions = {urlsplit(r["url"]).path.rsplit(".", 1)[-1] for r in kept}
    assert {"jpg", "png", "webp", "gif"} <= extensions
    assert meta["rows"] == len(rows) and meta["kept"] == len(kept)
    assert meta["expected_crops"] == sum(r["expected_crops"] for r in rows)


def test_rows_are_consistent_and_parquet_equals_jsonl(smoke_world: Path) -> None:  # noqa: F811
    rows, meta = read_web_corpus(str(smoke_world / "web"))
    policy = WebPolicy(**meta["policy"])
    assert [r["id"] for r in rows] == list(range(len(rows)))
    table = pq.read_table(smoke_world / "web" / TABLE_PARQUET).to_pylist()
    assert len(table) == len(rows)
    for parquet_row, row in zip(table, rows):
        for key in row:
            if key != "persons":
                assert parquet_row[key] == row[key], key
        assert [p["box"] for p in parquet_row["persons"]] == [p["box"] for p in row["persons"]]
        parquet_kp = [p["keypoints"] for p in parquet_row["persons"]]
        assert np.allclose(parquet_kp or 0, [p["keypoints"] for p in row["persons"]] or 0, atol=0.01)
    for row in rows:
        case = CASES[row["case"]]
        assert (row["expected"], row["expected_reason"]) == (case.outcome, case.reason and str(case.reason))
        assert row["expected_stage"] == (None if case.reason is None else str(REASON_STAGE[case.reason]))
        for person in row["persons"]:  # the stored verdict is what the policy says about the stored truth
            box, kp = tuple(person["box"]), np.asarray(person["keypoints"], dtype=np.float32).reshape(17, 3)
            assert person_verdict(box, kp, policy) == person["verdict"]
            w, h = row["image_size"]
            assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
            if row["expected"] == "kept":  # whole people, clear of the edges (and of the RGBA frame)
                assert EDGE_MARGIN <= box[0] and box[2] <= w - EDGE_MARGIN
                assert EDGE_MARGIN <= box[1] and box[3] <= h - EDGE_MARGIN
        crops = sum(p["verdict"] == Verdict.CROP for p in row["persons"])
        assert row["expected_crops"] == (crops if row["expected"] == "kept" else 0)
        if row["case"] in ("no_person", "small_people_only", "lying_person", "head_cropped"):
            assert crops == 0 and (row["case"] == "no_person") == (not row["persons"])
        if row["case"] == "lying_person":
            assert [p["verdict"] for p in row["persons"]] == [Verdict.BAD_ASPECT]
        if row["case"] == "head_cropped":
            (person,) = row["persons"]
            assert person["verdict"] == Verdict.POSE and person["box"][1] == 0
            assert all(v == 0 for v in person["keypoints"][2:15:3])  # nose, eyes, ears outside the image
        if row["case"].startswith("duplicate_"):
            original = rows[row["duplicate_of"]]
            assert original["id"] < row["id"] and original["expected"] == "kept"
            assert (original["url"] == row["url"]) == (row["case"] == "duplicate_url")


def test_addresses_that_must_never_be_fetched(smoke_world: Path) -> None:  # noqa: F811
    rows, _ = read_web_corpus(str(smoke_world / "web"))
    for row in rows:
        parts = urlsplit(row["url"])
        if row["case"] == "bad_scheme":
            assert parts.scheme not in ("http", "https")
        if row["case"] == "blocked_address":
            address = ipaddress.ip_address(parts.hostname)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            assert address.is_private or address.is_link_local


def test_every_row_is_served_as_described(corpus) -> None:
    rows, meta, server = corpus
    policy = WebPolicy(**meta["policy"])
    base = server.base_url
    bodies: dict[int, bytes] = {}
    for row in rows:
        case, url = row["case"], row["url"]
        if not url.startswith(base + "/"):
            assert case in ("bad_scheme", "blocked_address"), case
            continue
        if case == "slow":
            start = time.perf_counter()
            with pytest.raises((socket.timeout, TimeoutError)):
                get(url, timeout=0.5)
            assert time.perf_counter() - start >= 0.45 and meta["slow_delay_s"] > policy.timeout_s
            continue
        start = time.perf_counter()
        answer, hops = follow(url, base) if case in ("redirect_ok", "redirect_chain") else (get(url), 0)
        elapsed = time.perf_counter() - start
        check_answer(row, answer, hops, elapsed, policy, meta, url)
        bodies[row["id"]] = answer.body
    for row in rows:
        if row["case"] == "duplicate_image":
            digest, original = (hashlib.sha256(bodies[i]).digest() for i in (row["id"], row["duplicate_of"]))
            assert digest == original
            assert row["url"] != rows[row["duplicate_of"]]["url"]


def check_answer(
    row: dict, answer: Answer, hops: int, elapsed: float, policy: WebPolicy, meta: dict, url: str
) -> None:
    case = row["case"]
    if case == "http_404":
        assert answer.status == 404
    elif case == "http_500":
        assert answer.status == 500
    elif case == "redirect_loop":
        assert answer.status == 302 and answer.headers["location"] == urlsplit(url).path
    elif case == "redirect_to_blocked":
        assert answer.status == 302 and answer.headers["location"].startswith("http://169.254.169.254/")
    elif case == "redirect_chain":
        assert hops == policy.max_redirects + 1
        assert answer.status == 200 and answer.body.startswith(IMAGE_MAGIC)
    elif case == "truncated_transfer":
        assert answer.status == 200 and not answer.complete
        assert len(answer.body) < int(answer.headers["content-length"]) // 2
    elif case == "too_large":
        assert int(answer.headers["content-length"]) > policy.max_body_bytes
        assert answer.body.startswith(IMAGE_MAGIC[1])
    elif case == "html_page":
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")
    elif case in ("text_as_jpeg", "empty_body"):
        assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
        assert not answer.body.startswith(IMAGE_MAGIC) and (case == "text_as_jpeg") == bool(answer.body)
    elif case == "robots_noai":
        assert answer.headers["x-robots-tag"] in ("noai", "noimageai") and answer.body.startswith(IMAGE_MAGIC)
    elif case in ("truncated_file", "corrupt_png"):
        assert answer.status == 200 and answer.complete and answer.body.startswith(IMAGE_MAGIC)
        with pytest.raises(Exception):  # noqa: B017 -- PIL raises OSError, SyntaxError or zlib.error
            Image.open(io.BytesIO(answer.body)).load()
    elif case == "decompression_bomb":
        assert len(answer.body) < 200_000 and png_declared_size(answer.body) == (30000, 30000)
        assert 30000 * 30000 > policy.max_image_pixels
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(answer.body))
    elif case in ("too_small", "extreme_aspect"):
        image = upright_first_frame(answer.body)
        assert list(image.size) == row["image_size"]
        if case == "too_small":
            assert min(image.size) < policy.min_image_side
        else:
            assert max(image.size) / min(image.size) > policy.max_aspect_ratio
    else:
        decodable = ("duplicate_url", "duplicate_image", "no_person", "small_people_only", "lying_person",
                     "head_cropped")  # fmt: skip
        assert row["expected"] == "kept" or case in decodable, case
        check_image(row, answer, elapsed, policy, meta)


EXPECTED_FORMAT = {  # case -> (PIL format, mode) of the served file
    "scene_gif": ("GIF", "P"), "grayscale_jpeg": ("JPEG", "L"), "palette_png": ("PNG", "P"),
    "cmyk_jpeg": ("JPEG", "CMYK"), "png_16bit": ("PNG", "I;16"), "rgba_png": ("PNG", "RGBA"),
    "exif_rotated": ("JPEG", "RGB"), "animated_gif": ("GIF", "P"), "animated_webp": ("WEBP", "RGBA"),
    "mislabelled_type": ("PNG", "RGB"), "no_extension": ("JPEG", "RGB"),
}  # fmt: skip


def check_image(row: dict, answer: Answer, elapsed: float, policy: WebPolicy, meta: dict) -> None:
    """A decodable image whose upright first frame has the recorded size and contains the recorded people."""
    assert answer.status == 200 and answer.complete and answer.headers["content-type"].startswith("image/")
    assert int(answer.headers["content-length"]) <= policy.max_body_bytes
    with Image.open(io.BytesIO(answer.body)) as raw:
        if row["case"] in EXPECTED_FORMAT:
            assert (raw.format, raw.mode) == EXPECTED_FORMAT[row["case"]]
        assert getattr(raw, "n_frames", 1) == (3 if row["case"].startswith("animated") else 1)
        if row["case"] == "exif_rotated":
            assert raw.getexif().get(0x0112) == 6 and list(raw.size) == row["image_size"][::-1]
    if row["case"] == "mislabelled_type":
        assert answer.headers["content-type"] == "image/jpeg"
    if row["case"] == "slow_ok":
        assert meta["ok_delay_s"] * 0.9 <= elapsed < policy.timeout_s
    image = upright_first_frame(answer.body).convert("RGB")
    assert list(image.size) == row["image_size"]
    assert min(image.size) >= policy.min_image_side
    assert max(image.size) / min(image.size) <= policy.max_aspect_ratio
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    for person in row["persons"]:  # something is drawn inside each box: it is not flat background
        x0, y0, x1, y1 = person["box"]
        assert pixels[y0:y1, x0:x1].std() > 5


def test_manifest_is_what_the_server_reads(smoke_world: Path) -> None:  # noqa: F811
    behaviours = read_manifest(smoke_world / "web")
    assert any(b.redirect_loop for b in behaviours.values())
    assert any(b.truncate_at for b in behaviours.values())
    assert any(b.headers.get("X-Robots-Tag") == "noai" for b in behaviours.values())
    for path, behaviour in behaviours.items():
        target = smoke_world / "web" / path.lstrip("/")
        assert target.is_file() or behaviour.redirect_to or behaviour.redirect_loop, path


def test_rebase_moves_only_corpus_urls(corpus, smoke_world: Path) -> None:  # noqa: F811
    rows, meta, server = corpus
    original, _ = read_web_corpus(str(smoke_world / "web"))
    assert meta["base_url"] == server.base_url
    for before, after in zip(original, rows):
        if before["url"].startswith("http://127.0.0.1:8000/"):
            assert after["url"] == server.base_url + before["url"][len("http://127.0.0.1:8000") :]
        else:
            assert after["url"] == before["url"]
    table = pq.read_table(Path(server.root) / TABLE_PARQUET).column("url").to_pylist()
    assert table == [r["url"] for r in rows]


def test_person_verdict_rules_by_hand() -> None:
    policy = WebPolicy()
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[:, 2] = 2
    assert person_verdict((0, 0, 100, 300), kp, policy) == Verdict.CROP
    assert person_verdict((0, 0, 80, 300), kp, policy) == Verdict.TOO_SMALL  # shorter side 80 < 90
    assert person_verdict((0, 0, 200, 300), kp, policy) == Verdict.BAD_ASPECT  # 0.67 > 0.5
    assert person_verdict((0, 0, 100, 420), kp, policy) == Verdict.BAD_ASPECT  # 0.238 < 0.25
    no_head = kp.copy()
    no_head[1:5, 2] = 1  # only the nose visible: 1 head keypoint < 2
    assert person_verdict((0, 0, 100, 300), no_head, policy) == Verdict.POSE
    no_hips = kp.copy()
    no_hips[11:13, 2] = 0
    assert person_verdict((0, 0, 100, 300), no_hips, policy) == Verdict.POSE
    few = kp.copy()
    few[5:, 2] = 1  # 5 head + 3 more visible = 8 is enough ...
    few[[11, 12, 13], 2] = 2
    assert person_verdict((0, 0, 100, 300), few, policy) == Verdict.CROP
    few[13, 2] = 1  # ... 7 is not
    assert person_verdict((0, 0, 100, 300), few, policy) == Verdict.POSE


def test_png_header_reader() -> None:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 480)
    assert png_declared_size(header) == (640, 480)
    with pytest.raises(ValueError):
        png_declared_size(b"GIF89a" + bytes(30))
