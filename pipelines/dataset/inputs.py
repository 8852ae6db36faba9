"""Finding the input files and reading them with Ray Data as pipeline rows.

`input` is one or more (comma-separated) files, folders, s3:// prefixes or glob patterns. Tables:
Parquet, JSONL (.jsonl/.json/.ndjson) and CSV/TSV; or plain image folders (jpg/png/webp/gif/bmp/tiff).
One run reads one kind; `read.format` may force it. Row ids come from the `id` column when present,
else from the url (or the image bytes, or the file path of a folder image), so they are stable.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from gadms import storage
from gadms.errors import UserError
from pipelines.dataset.config import ReadConfig

KINDS = {
    ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
    ".jpg": "images", ".jpeg": "images", ".png": "images", ".webp": "images", ".gif": "images", ".bmp": "images",
    ".tif": "images", ".tiff": "images",
}  # fmt: skip


@dataclass(frozen=True)
class InputFiles:
    kind: str
    files: list[str]


def _kind(uri: str) -> str | None:
    name = uri.rsplit("/", 1)[-1].lower()
    return next((kind for ext, kind in KINDS.items() if name.endswith(ext)), None)


def find_inputs(spec: str, cfg: ReadConfig) -> InputFiles:
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if any(ch in part for ch in "*?["):
            cut = min(part.index(ch) for ch in "*?[" if ch in part)
            base = part[:cut].rsplit("/", 1)[0] or "."
            pattern = part if storage.is_s3(part) else storage.resolve(base)[1] + part[len(base) :]
            matched = [f for f in storage.list_files(base) if fnmatch.fnmatch(f, pattern)]
            if not matched:
                raise UserError(f"input {part}: the pattern matches no file")
            files += matched
        elif storage.exists(part):
            fs, path = storage.resolve(part)
            info = fs.get_file_info(path)
            if info.type.name == "Directory":
                found = [f for f in storage.list_files(part) if _kind(f) and not f.rsplit("/", 1)[-1].startswith(".")]
                if not found:
                    raise UserError(f"input {part}: no table or image files in this folder")
                files += found
            else:
                files.append(part if storage.is_s3(part) else path)
        else:
            raise UserError(f"input {part}: no such file, folder or prefix")
    kinds = {_kind(f) for f in files}
    if cfg.format != "auto":
        return InputFiles(cfg.format, sorted(dict.fromkeys(files)))
    if None in kinds:
        bad = next(f for f in files if _kind(f) is None)
        raise UserError(f"input {bad}: unknown file type (set read.format)")
    if len(kinds) != 1:
        raise UserError(f"input {spec}: mixes {sorted(kinds)} files; run one kind at a time or set read.format")
    return InputFiles(kinds.pop(), sorted(dict.fromkeys(files)))


def read_dataset(inputs: InputFiles, cfg: ReadConfig, num_cpus: float = 1.0):
    """The raw Ray Dataset of the input files (columns as in the files, plus `path`)."""
    import ray

    filesystem, _ = storage.resolve(inputs.files[0])
    paths = [storage.resolve(f)[1] for f in inputs.files]
    kwargs = {"filesystem": filesystem, "include_paths": True, "ray_remote_args": {"num_cpus": num_cpus}}
    if cfg.blocks:
        kwargs["override_num_blocks"] = cfg.blocks
    if inputs.kind == "parquet":
        ds = ray.data.read_parquet(paths, **kwargs)
    elif inputs.kind == "jsonl":
        ds = ray.data.read_json(paths, lines=True, **kwargs)
    elif inputs.kind == "csv":
        ds = ray.data.read_csv(paths, **kwargs)
    else:
        ds = ray.data.read_binary_files(paths, **kwargs)
    if cfg.max_rows:
        ds = ds.limit(cfg.max_rows)
    return ds
