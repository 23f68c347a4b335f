"""modelprof: parameters, compute, memory traffic, latency and throughput of PyTorch models.

The public names are imported on first use (PEP 562), so ``import modelprof.render`` and ``modelprof --help``
never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_PUBLIC = {
    "count_costs": "counting.api", "profile": "counting.api",
    "Workload": "workload", "Training": "workload", "Generation": "workload", "Precision": "workload",
    "Checkpointing": "workload",
    "Cost": "counting.formulas", "TensorSpec": "counting.formulas", "register_formula": "counting.formulas",
    "SingleTensorAdapter": "loading.build",
    "DType": "loading.source", "InputSpec": "loading.source",
    "InputInfo": "reports.stats", "LayerCost": "reports.stats", "Report": "reports.stats", "TotalCost": "reports.stats",
    "METRICS": "metrics", "Metric": "metrics",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'modelprof' has no attribute {name!r}")
