"""Dataset construction jobs: `build_dataset.py` (WebPerson from web tables) and `build_templates.py`."""
