"""modelprof: parameters, compute, memory traffic, latency and throughput of PyTorch models."""

__version__ = "0.1.0"

from .counting import count_costs, profile  # noqa: E402
from .formulas import Cost, TensorSpec, register_formula  # noqa: E402
from .loading import DType, InputSpec, SingleTensorAdapter  # noqa: E402
from .report import InputInfo, LayerCost, Report, TotalCost  # noqa: E402

__all__ = [
    "Cost",
    "DType",
    "InputInfo",
    "InputSpec",
    "LayerCost",
    "Report",
    "SingleTensorAdapter",
    "TensorSpec",
    "TotalCost",
    "__version__",
    "count_costs",
    "profile",
    "register_formula",
]
