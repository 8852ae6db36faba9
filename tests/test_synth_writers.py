"""Writers: each output parsed by an independent, minimal check of the real format; determinism; the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from synth_world import smoke_config, smoke_world, tree_digest  # noqa: F401  (fixtures)

from gadms.data.webperson import ShardedParquetWriter, read_webperson, webperson_schema
from gadms.errors import UserError
from gadms.synth.config import load_synth_config
from gadms.synth.generate import generate_world
from gadms.synth.world import allocate_identities
from gadms.synth.writers import WEBPERSON_EXTRA_FIELDS, write_webperson

REPO = Path(__file__).resolve().parents[1]


def load(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    assert isinstance(data, list) and data
    return data


def ids_by_split(records: list[dict]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for r in records:
        out[r["split"]].add(r["id"])
    return out


def assert_disjoint(groups: dict[str, set[int]]) -> None:
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not groups[a] & groups[b], (a, b)


def test_cuhk_pedes_format(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    root = smoke_world / "CUHK-PEDES"
    records = load(root / "reid_raw.json")
    for r in records:
        assert list(r) == ["split", "captions", "file_path", "processed_tokens", "id"]
        assert isinstance(r["id"], int) and r["id"] >= 1
        assert len(r["captions"]) == 2 and r["captions"][0] != r["captions"][1]
        assert [" ".join(t) for t in r["processed_tokens"]] == [
            " ".join(c.lower().replace(",", "").replace(".", "").split()) for c in r["captions"]
        ]
        source, name = r["file_path"].split("/")
        assert source in {"CUHK01", "CUHK03", "Market", "test_query", "train_query"}
        with Image.open(root / "imgs" / r["file_path"]) as image:
            assert image.format == ("PNG" if source in ("CUHK01", "CUHK03") else "JPEG")
            assert name.endswith(".png" if image.format == "PNG" else ".jpg")
            assert image.height > image.width  # tall person crops
    groups = ids_by_split(records)
    assert {s: len(v) for s, v in groups.items()} == smoke_config.cuhk.ids.model_dump()
    assert_disjoint(groups)
    assert min(min(v) for v in groups.values()) == 1
    assert len({r["file_path"] for r in records}) == len(records)


def test_icfg_pedes_format(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    root = smoke_world / "ICFG-PEDES"
    records = load(root / "ICFG-PEDES.json")
    for r in records:
        assert list(r) == ["id", "file_path", "captions", "processed_tokens", "split"]
        assert r["split"] in ("train", "test") and r["file_path"].startswith(r["split"] + "/")
        assert len(r["captions"]) == 1 and len(r["processed_tokens"]) == 1
        assert (root / "imgs" / r["file_path"]).is_file()
    groups = ids_by_split(records)
    assert len(groups["train"]) == smoke_config.icfg.train_ids
    assert len(groups["test"]) == smoke_config.icfg.test_ids
    assert_disjoint(groups)


def test_rstpreid_format(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    root = smoke_world / "RSTPReid"
    records = load(root / "data_captions.json")
    for r in records:
        assert list(r) == ["id", "img_path", "captions", "split"]
        assert len(r["captions"]) == 2 and "/" not in r["img_path"]
        with Image.open(root / "imgs" / r["img_path"]) as image:
            assert image.format == "JPEG"
    groups = ids_by_split(records)
    assert {s: len(v) for s, v in groups.items()} == smoke_config.rstp.ids.model_dump()
    assert_disjoint(groups)
    assert set(Counter(r["id"] for r in records).values()) == {5}  # exactly 5 images per identity


def test_no_identity_is_shared_between_datasets(smoke_config) -> None:  # noqa: F811
    world = allocate_identities(smoke_config)
    splits = (*world.cuhk.values(), *world.icfg.values(), *world.rstp.values(), world.webperson)
    everyone = [p for split in splits for p in split]
    assert len({p.signature() for p in everyone}) == len(everyone)


def test_webperson_parquet(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    shards = sorted((smoke_world / "webperson").glob("*.parquet"))
    assert [s.name for s in shards] == [f"part-{i:05d}.parquet" for i in range(len(shards))]
    assert len(shards) >= 2
    rows = []
    for shard in shards:
        table = pq.read_table(shard)
        assert table.schema.names[:4] == ["image", "image_path", "caption1", "caption2"]
        assert table.schema.field("image").type == pa.binary()
        assert table.schema.field("caption1").type == pa.string()
        assert table.num_rows <= smoke_config.webperson.rows_per_shard
        rows += table.to_pylist()
    assert all(pq.read_table(s).num_rows == smoke_config.webperson.rows_per_shard for s in shards[:-1])
    assert len({r["person_id"] for r in rows}) == smoke_config.webperson.ids
    assert len({r["image_path"] for r in rows}) == len(rows)
    for row in rows:
        with Image.open(io.BytesIO(row["image"])) as image:
            image.load()
            assert image.format == "JPEG" and image.height > image.width
        assert row["caption1"] and row["caption2"] and row["caption1"] != row["caption2"]
    assert read_webperson(str(smoke_world / "webperson")).num_rows == len(rows)


def test_webperson_to_s3_and_shard_overwrite(s3_bucket: str, smoke_config) -> None:  # noqa: F811
    webperson = smoke_config.webperson.model_copy(update={"rows_per_shard": 3})
    cfg = smoke_config.model_copy(update={"webperson": webperson})
    people = allocate_identities(cfg).webperson[:4]
    target = f"{s3_bucket}/webperson"
    summary = write_webperson(cfg, target, people)
    assert summary.files == [f"{target}/part-{i:05d}.parquet" for i in range(len(summary.files))]
    table = read_webperson(target)
    assert table.num_rows == summary.splits["train"]["images"]
    assert set(table.column("person_id").to_pylist()) == {p.pid for p in people}
    with pytest.raises(UserError, match="already holds .* Parquet shards"):
        write_webperson(cfg, target, people)
    write_webperson(cfg, target, people[:1], overwrite=True)  # fewer shards: the old ones must go
    rewritten = read_webperson(target)
    assert rewritten.column("person_id").to_pylist() == [people[0].pid] * rewritten.num_rows


def test_sharded_writer_commits_only_whole_shards(tmp_path: Path) -> None:
    schema = webperson_schema(WEBPERSON_EXTRA_FIELDS[:1])
    row = {"image": b"x", "image_path": "a.jpg", "caption1": "a", "caption2": "b", "person_id": 1}
    with pytest.raises(RuntimeError):
        with ShardedParquetWriter(str(tmp_path / "wp"), schema, rows_per_shard=2) as writer:
            writer.add_all([row] * 3)
            raise RuntimeError("killed mid-shard")
    # one whole shard committed; no temporary file and no partial second shard
    assert sorted(p.name for p in (tmp_path / "wp").iterdir()) == ["part-00000.parquet"]
    with pytest.raises(UserError, match="missing column 'caption2'"):
        bad = tmp_path / "bad.parquet"
        pq.write_table(pa.table({"image": [b"x"], "image_path": ["a"], "caption1": ["c"]}), bad)
        read_webperson(str(bad))


def test_cli_regenerates_identical_bytes(smoke_world: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "again"
    done = subprocess.run([sys.executable, "-m", "gadms.synth", "--size", "smoke", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["web_rows"] > 40 and "total" in summary["timings_s"]
    assert tree_digest(out) == tree_digest(smoke_world)
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 600 and sheet.height > 600


def test_other_seed_other_world_and_no_silent_overwrite(tmp_path: Path) -> None:
    small = ["cuhk.ids.train=2", "cuhk.ids.val=1", "cuhk.ids.test=1"]
    small += [f"{part}.enabled=false" for part in ("icfg", "rstp", "webperson", "web", "contact_sheet")]
    first = tmp_path / "a"
    generate_world(load_synth_config("smoke", overrides=small), str(first))
    with pytest.raises(UserError, match=r"already holds generated data \(CUHK-PEDES"):
        generate_world(load_synth_config("smoke", overrides=small), str(first))
    generate_world(load_synth_config("smoke", overrides=[*small, "seed=1"]), str(first), overwrite=True)
    second = tmp_path / "b"
    generate_world(load_synth_config("smoke", overrides=small), str(second))
    annotation = "CUHK-PEDES/reid_raw.json"
    assert (first / annotation).read_bytes() != (second / annotation).read_bytes()
    assert "seed: 1" in (first / "synth_config.yaml").read_text()


def test_cli_user_errors_are_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["--size", "huge"], "error: unknown size 'huge'"),
        (["--size", "smoke", "cuhk.ids.train=0"], "cuhk.ids.train: Input should be greater than or equal"),
        (["--size", "smoke", "--noise-rate", "1.5"], "noise.rate: Input should be less than or equal to 1"),
    ):
        done = subprocess.run([sys.executable, "-m", "gadms.synth", "--out", str(tmp_path / "x"), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
