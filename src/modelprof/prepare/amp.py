"""``--amp``: automatic mixed precision, PyTorch's own autocast, on the meta device too.

Autocast decides, op by op, which inputs to cast (matrix products and convolutions to 16 bits, some reductions kept
in float32) and caches the 16-bit copy of each weight for the forward; autograd then saves the 16-bit tensors and
casts the gradients back to the parameters' float32, and the optimizer's state stays float32. Counting under the
real autocast gets all of those bytes as they are; timing under it measures the same recipe: the forward and the
loss under autocast, the backward and the optimizer step outside it.

Autocast acts only on tensors of a device with an autocast dispatch key (CPU, CUDA ...): on the meta device it
would change nothing. So on meta the model's parameters and buffers, and the inputs, are swapped for fake CPU
tensors (:func:`~modelprof.prepare.base.on_fake_cpu`: a shape, a dtype and a device, no storage) for the duration,
CPU autocast runs on them, and the meta tensors are put back afterwards. On CPU and meta the cast lists are CPU
autocast's; on CUDA, CUDA's (which also keep softmax, layer norm and a few pointwise ops in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from modelprof.prepare.base import Run, Transform, on_fake_cpu

if TYPE_CHECKING:
    from modelprof.workload import Workload

#: The 16-bit type autocast uses, by device type (float16 on CUDA, bfloat16 elsewhere).
AMP_DTYPES = {"cuda": "float16", "cpu": "bfloat16"}


def amp_dtype(device_type: str):
    """The ``torch.dtype`` autocast runs in on ``device_type``."""
    import torch

    return getattr(torch, AMP_DTYPES.get(device_type, "bfloat16"))


class Autocast(Transform):
    """Run the forward and the loss under autocast (:meth:`Run.autocast`); on meta, on fake CPU tensors."""

    option = "--amp"

    def wanted(self, workload: Workload) -> bool:
        return workload.precision.amp

    def refusal(self, workload: Workload) -> str | None:
        if not workload.precision.amp:
            return None
        if workload.generation is not None:
            return "--amp runs a forward or a training step under autocast; drop --generate or --amp"
        dtype = workload.precision.dtype
        if dtype is not None and dtype.value in ("float16", "bfloat16"):
            return (f"--amp keeps float32 weights and casts them op by op, so it does not go with --dtype "
                    f"{dtype.value} (weights already 16-bit); drop --dtype for mixed precision, or --amp for a "
                    f"pure {dtype.value} model")
        return None

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        if run.mixed_precision is not None:  # FSDP's mixed-precision policy casts instead (prepare/parallel.py)
            yield run
            return
        dtype = amp_dtype("cpu" if run.device == "meta" else run.device)
        if run.device != "meta" or run.fake_mode is not None:  # swapped for fake CPU tensors already (sharding)
            yield replace(run, autocast_dtype=dtype)
            return
        with on_fake_cpu(run) as faked, faked.fake_mode:
            yield replace(faked, autocast_dtype=dtype)
