"""`python tune/sweep_masking.py`: Ray Tune sweeps of GA-DMS's mask ratios and loss weights.

- `config.py`: the sweep config (configs/tune/*.yaml): base recipe, search space, scheduler, resources;
- `space.py`: the knobs, their default ranges around the base values, and the search-space checks;
- `trial.py`: one trial = the training job's TorchTrainer reporting to Tune;
- `job.py`: the driver (checks, Tuner or Tuner.restore, concurrency);
- `report.py`: results table, best config, plots.
"""
