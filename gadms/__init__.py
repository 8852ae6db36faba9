"""GA-DMS: gradient-attention guided dual-masking for text-based person retrieval, on Ray.

The library (this package) is plain PyTorch and Python; Ray appears only in the job entry points
and their thin wrappers (Ray Data stages, the Train loop, the Tune trainable).
"""

__version__ = "0.1.0"
