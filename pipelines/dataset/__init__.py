"""The WebPerson construction pipeline: one module per concern, plain Python; Ray Data only in `job.py`.

Stage order (each stage can be switched off in the config):
input -> dedup_url -> download -> dedup_content -> decode -> detect -> pose (crops) -> mllm_filter
-> caption -> caption_check -> write. See pipelines/README.md.
"""
