"""Generate a whole synthetic world into one folder (or s3:// prefix):

    <out>/CUHK-PEDES/   reid_raw.json + imgs/
    <out>/ICFG-PEDES/   ICFG-PEDES.json + imgs/
    <out>/RSTPReid/     data_captions.json + imgs/
    <out>/webperson/    part-00000.parquet, ... (or webperson.output)
    <out>/web/          the web corpus folder (serve it with MisbehavingHTTPServer)
    <out>/contact_sheet.png, synth_manifest.json (what was written), synth_config.yaml (resolved config)

Every file is a pure function of the config: the same config gives the same bytes. Timings are
returned and logged, never written into the outputs.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow.fs as pafs

from gadms import storage
from gadms.config import to_yaml
from gadms.errors import UserError
from gadms.synth.attributes import ATTRIBUTE_VALUES
from gadms.synth.config import SynthConfig
from gadms.synth.contact_sheet import contact_sheet_png
from gadms.synth.web_corpus import build_web_corpus
from gadms.synth.world import WorldIdentities, allocate_identities, render_person_images, views_of
from gadms.synth.writers import benchmark_writers, cuhk_image_format, jpeg_format, write_webperson

log = logging.getLogger(__name__)
OUTPUT_NAMES = ("CUHK-PEDES", "ICFG-PEDES", "RSTPReid", "webperson", "web", "contact_sheet.png",
                "synth_manifest.json", "synth_config.yaml")  # fmt: skip


def _prepare_output(out: str, overwrite: bool) -> None:
    """Refuse to mix two worlds in one folder; with `overwrite`, delete only what we would write."""
    present = [name for name in OUTPUT_NAMES if storage.exists(storage.join(out, name))]
    if present and not overwrite:
        names = ", ".join(present)
        raise UserError(f"{out}: already holds generated data ({names}); pass --overwrite to replace it")
    for name in present:
        fs, path = storage.resolve(storage.join(out, name))
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)
        else:
            fs.delete_file(path)


def _contact_sheet(cfg: SynthConfig, out: str, world: WorldIdentities) -> str | None:
    """Sample people from WebPerson (noisy captions show in red) or else from CUHK-PEDES train.

    The photos are rendered again with the dataset's own seeds, so they are the dataset's photos."""
    if cfg.webperson.enabled:
        people, stream, fmt = world.webperson, "webperson", jpeg_format
        images_per_id, noise = cfg.webperson.images_per_id, cfg.noise.rate
    elif cfg.cuhk.enabled:
        people, stream, fmt = world.cuhk["train"], "cuhk", cuhk_image_format
        images_per_id, noise = cfg.cuhk.images_per_id, 0.0
    else:
        return None
    rows = []
    for person in people[: cfg.contact_sheet.people]:
        n_views = views_of(cfg, stream, person, images_per_id)
        images = render_person_images(cfg, stream, person, n_views, 2, fmt(person), noise, cfg.noise.kinds)
        rows.append(images[: cfg.contact_sheet.views])
    title = f"Synthetic person world, seed {cfg.seed}: {stream} identities"
    title += f", caption noise rate {noise} (red)" if noise else ""
    uri = storage.join(out, "contact_sheet.png")
    storage.write_bytes_atomic(uri, contact_sheet_png(rows, title))
    return "contact_sheet.png"


def _relative(uri: str, out: str) -> str:
    """Paths inside `out` are written relative to it, so moving the folder keeps the manifest true."""
    return uri[len(out) + 1 :] if uri.startswith(out + "/") else uri


def generate_world(cfg: SynthConfig, out: str, overwrite: bool = False) -> dict[str, Any]:
    """Write every enabled part of the world under `out`; returns the manifest plus timings."""
    out = str(out).rstrip("/")
    _prepare_output(out, overwrite)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = time.perf_counter() - start - sum(timings.values())

    world = allocate_identities(cfg)
    lap("identities")
    datasets = []
    for name, write in benchmark_writers(cfg, out, world):
        summary = write()
        datasets.append(summary.to_dict())
        lap(name)
        log.info("wrote %s to %s: %s", name, summary.path, summary.splits)
    if cfg.webperson.enabled:
        target = cfg.webperson.output or storage.join(out, "webperson")
        summary = write_webperson(cfg, target, world.webperson, overwrite=overwrite)
        datasets.append(summary.to_dict())
        lap("WebPerson")
        log.info("wrote WebPerson to %s: %d shards, %s", target, len(summary.files), summary.splits)
    web = None
    if cfg.web.enabled:
        web = build_web_corpus(storage.join(out, "web"), cfg.web, cfg.seed)
        lap("web corpus")
        log.info("wrote web corpus: %d rows, %d kept", web["rows"], web["kept"])
    sheet = _contact_sheet(cfg, out, world) if cfg.contact_sheet.enabled else None
    lap("contact sheet")
    for entry in datasets:
        entry["path"] = _relative(entry["path"], out)
        entry["files"] = [_relative(f, out) for f in entry["files"]]
    manifest = {
        "seed": cfg.seed,
        "attributes": {name: list(values) for name, values in ATTRIBUTE_VALUES.items()},
        "datasets": datasets,
        "web_corpus": None if web is None else {k: v for k, v in web.items() if k != "cases"},
        "contact_sheet": sheet,
    }
    manifest_bytes = json.dumps(manifest, indent=1).encode()
    storage.write_bytes_atomic(storage.join(out, "synth_manifest.json"), manifest_bytes)
    storage.write_bytes_atomic(storage.join(out, "synth_config.yaml"), to_yaml(cfg).encode())
    timings["total"] = time.perf_counter() - start
    return {**manifest, "timings_s": {k: round(v, 2) for k, v in timings.items()}}
