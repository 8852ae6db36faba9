"""Dataset readers and writers: the three retrieval benchmarks and WebPerson-schema Parquet.

- `benchmarks`: CUHK-PEDES, ICFG-PEDES and RSTPReid in their published on-disk formats, validated,
  as typed splits (image paths, person ids, captions) for training and evaluation.
- `webperson`: the WebPerson Parquet schema (`image`, `image_path`, `caption1`, `caption2`), a
  sharded writer that commits each shard atomically to a local path or s3://, and a reader.
"""

from gadms.data.benchmarks import (
    FORMATS,
    Benchmark,
    BenchmarkSplit,
    detect_benchmark,
    read_benchmark,
    read_cuhk_pedes,
    read_icfg_pedes,
    read_rstpreid,
)
from gadms.data.webperson import REQUIRED_COLUMNS, ShardedParquetWriter, read_webperson, webperson_schema

__all__ = [
    "FORMATS",
    "REQUIRED_COLUMNS",
    "Benchmark",
    "BenchmarkSplit",
    "ShardedParquetWriter",
    "detect_benchmark",
    "read_benchmark",
    "read_cuhk_pedes",
    "read_icfg_pedes",
    "read_rstpreid",
    "read_webperson",
    "webperson_schema",
]
