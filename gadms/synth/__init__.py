"""A synthetic person world, generated offline with known ground truth.

No person dataset can be downloaded here, yet training must be shown to learn, the benchmark
readers must be tested on files in their exact formats, and the dataset pipeline must face web
input full of bad cases. This package draws people (14 caption-visible attributes, see
`attributes`), photographs them from varied camera views (`person`, `crops`), describes them in
true captions with optional recorded noise (`captions`, `noise`), and writes:
- CUHK-PEDES, ICFG-PEDES and RSTPReid folders in their real on-disk formats (`writers`);
- WebPerson-schema Parquet shards, local or s3:// (`writers`, `gadms.data.webperson`);
- a COYO-style web corpus with every bad case a pipeline must survive, served by the test HTTP
  server, each row carrying its expected outcome (`scenes`, `web_files`, `web_corpus`, `web_outcomes`);
- a contact sheet PNG (`contact_sheet`).
Run `python -m gadms.synth --size smoke|demo --out DIR`; sizes are YAML profiles in configs/synth/.
"""
