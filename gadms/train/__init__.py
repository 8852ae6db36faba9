"""`python -m gadms.train`: GA-DMS pretraining and fine-tuning on Ray Train.

- `config.py`: the job config (recipes in configs/train/);
- `data.py`: the Ray Data pipeline from WebPerson Parquet or a benchmark split to ready batches;
- `loop.py`: the worker loop under DDP (checkpoints, resume, validation, progress);
- `job.py`: the driver (input checks, TorchTrainer, test evaluation of the best checkpoint);
- `report.py`: TensorBoard events, curves PNG and summary next to the checkpoints.
"""
