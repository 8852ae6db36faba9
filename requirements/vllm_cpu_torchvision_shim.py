"""Lets PyPI's CUDA-linked torchvision 0.28 import beside torch 2.13.0+cpu (the vLLM CPU env only).

Installed into .venv-vllm's site-packages with a .pth line by `make vllm-env`. torchvision's C ops
cannot load without CUDA torch, and its import then dies on two unguarded fake-kernel registrations
(torchvision::nms, torchvision::qnms). transformers' image processors and vLLM import torchvision for
its pure-Python transforms only, so we define those two operator schemas (no kernels) just before
torchvision is first imported. Nothing runs unless torchvision is imported.
"""

import importlib.abc
import sys

_KEEP = []


class _TorchvisionShim(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        try:
            torch.ops.torchvision.nms  # noqa: B018  (present when torchvision's C ops did load)
        except (AttributeError, RuntimeError):
            lib = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _KEEP.append(lib)
        return None


sys.meta_path.insert(0, _TorchvisionShim())
