"""``--dtype``: the model's floating-point parameters and buffers, and its float inputs, in another type."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelprof.prepare.base import Run, Transform, tensors_replaced

if TYPE_CHECKING:
    from modelprof.workload import Workload


class Cast(Transform):
    """Cast floating-point parameters, buffers and inputs to ``precision.dtype`` (what ``model.to(dtype)`` does),
    leaving integer tensors (token ids, counters) alone."""

    option = "--dtype"

    def wanted(self, workload: Workload) -> bool:
        return workload.precision.dtype is not None

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        dtype = workload.precision.dtype.torch

        def cast(tensor):
            return tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor

        with tensors_replaced(run, cast):
            yield run.with_inputs(cast)
