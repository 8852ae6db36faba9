"""The offline demo (`make demo`): the project's jobs end to end on this machine, nothing downloaded.

It starts what a cluster would provide, locally: a Ray instance, a real S3-compatible server
(SeaweedFS on 127.0.0.1) and, as the jobs land, runs them against it. Today it runs the foundation
check: a Ray Data job writes a Parquet table to S3 and reads it back, and the demo verifies that
every row came back byte-identical. Each step prints what it did; a JSON report is written last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from gadms import storage
from gadms.cli import config_arg_parser, run_main
from gadms.config import Config, load_config, to_yaml

log = logging.getLogger("gadms.demo")

DEFAULT_CONFIG = "configs/demo.yaml"


class DemoConfig(Config):
    output_dir: str = Field("outputs/demo", description="local folder for the demo's reports")
    storage: Literal["s3", "local"] = Field(
        "s3", description="s3: a SeaweedFS server started on 127.0.0.1; local: a folder under output_dir"
    )
    num_cpus: int = Field(2, ge=1, description="CPUs of the local Ray instance")
    num_rows: int = Field(2000, ge=1, description="rows of the round-trip table")
    num_blocks: int = Field(4, ge=1, description="Ray Data blocks (= Parquet files) of that table")
    seed: int = 0


def make_rows(batch: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Rows with an id, random binary payload (like image bytes) and text, derived from the id."""
    ids = batch["id"]
    payloads = [np.random.default_rng([seed, int(i)]).bytes(64 + int(i) % 200) for i in ids]
    texts = [f"row {int(i)}: a person in a {('red', 'blue', 'green')[int(i) % 3]} shirt" for i in ids]
    return {"id": ids, "payload": np.array(payloads, dtype=object), "text": np.array(texts, dtype=object)}


def table_digest(table: pa.Table) -> str:
    """Order-independent digest of (id, payload, text) rows: equal digests mean identical rows."""
    table = table.select(["id", "payload", "text"]).sort_by("id")
    digest = hashlib.sha256()
    for row_id, payload, text in zip(*(table.column(c).to_pylist() for c in ("id", "payload", "text"))):
        digest.update(f"{row_id}\0{len(payload)}\0{text}\0".encode() + payload)
    return digest.hexdigest()


def parquet_round_trip(uri: str, config: DemoConfig) -> dict[str, object]:
    """Write the table with Ray Data to `uri` (local or s3://), read it back, compare."""
    import ray

    filesystem, path = storage.resolve(uri)
    start = time.perf_counter()
    ds = ray.data.range(config.num_rows, override_num_blocks=config.num_blocks).map_batches(
        make_rows, fn_kwargs={"seed": config.seed}, batch_format="numpy"
    )
    ds.write_parquet(path, filesystem=filesystem)
    written_s = time.perf_counter() - start
    files = storage.list_files(uri, suffix=".parquet")
    back = ray.data.read_parquet(path, filesystem=filesystem).to_arrow_refs()
    read_table = pa.concat_tables(ray.get(back))
    expected = pa.Table.from_pydict(make_rows({"id": np.arange(config.num_rows)}, config.seed))
    return {
        "uri": uri,
        "files": len(files),
        "rows_written": config.num_rows,
        "rows_read": read_table.num_rows,
        "identical": table_digest(read_table) == table_digest(expected),
        "write_seconds": round(written_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = config_arg_parser(__doc__.splitlines()[0], DEFAULT_CONFIG).parse_args(argv)
    config = load_config(DemoConfig, args.config, args.overrides)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"config": config.model_dump()}

    with ExitStack() as stack:
        import ray

        if config.storage == "s3":
            from gadms.testing.s3_server import SeaweedS3Server

            server = stack.enter_context(SeaweedS3Server())
            os.environ.update(server.env())  # before Ray starts, so its workers inherit the endpoint
            base_uri = f"s3://{server.create_bucket('demo')}"
            print(f"[demo] started a local S3 server (SeaweedFS) at {server.endpoint}, bucket {base_uri}")
        else:
            base_uri = str((out / "data").resolve())
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, configure_logging=False)
        stack.callback(ray.shutdown)
        print(f"[demo] started a local Ray instance with {config.num_cpus} CPUs")

        result = parquet_round_trip(storage.join(base_uri, f"roundtrip-{int(time.time())}"), config)
        report["parquet_round_trip"] = result
        verdict = "byte-identical" if result["identical"] else "DIFFERENT (bug)"
        print(
            f"[demo] Ray Data wrote {result['rows_written']} rows as {result['files']} Parquet files to "
            f"{result['uri']} in {result['write_seconds']} s and read {result['rows_read']} back: {verdict}"
        )

    storage.write_bytes_atomic(str(out / "report.json"), json.dumps(report, indent=1).encode())
    storage.write_bytes_atomic(str(out / "config.yaml"), to_yaml(config).encode())
    print(f"[demo] report: {out / 'report.json'}")
    print("[demo] not yet part of the demo (later issues): synthetic data, dataset build, training, sweep")
    return 0 if result["identical"] and result["rows_read"] == result["rows_written"] else 1


if __name__ == "__main__":
    run_main(main)
