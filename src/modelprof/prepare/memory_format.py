"""``--channels-last``: 4-D parameters and float inputs in the channels-last memory format (NHWC strides)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelprof.prepare.base import Run, Transform, tensors_replaced

if TYPE_CHECKING:
    from modelprof.workload import Workload


class ChannelsLast(Transform):
    """What ``model.to(memory_format=torch.channels_last)`` does (4-D weights), and the same for 4-D float
    inputs, so convolutions run their channels-last kernels."""

    option = "--channels-last"

    def wanted(self, workload: Workload) -> bool:
        return workload.precision.channels_last

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        import torch

        def channels_last(tensor):
            if tensor.dim() == 4 and tensor.is_floating_point():
                return tensor.contiguous(memory_format=torch.channels_last)
            return tensor

        with tensors_replaced(run, channels_last):
            yield run.with_inputs(channels_last)
