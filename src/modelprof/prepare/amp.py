"""Automatic mixed precision while counting (``--amp``): PyTorch's own autocast, on the meta device too.

Autocast decides, op by op, which inputs to cast (matrix products and convolutions to 16 bits, some reductions kept
in float32) and caches the 16-bit copy of each weight for the forward; autograd then saves the 16-bit tensors and
casts the gradients back to the parameters' float32, and the optimizer's state stays float32. Counting under the
real autocast gets all of those bytes as they are.

Autocast acts only on tensors of a device with an autocast dispatch key (CPU, CUDA ...): on the meta device it
would change nothing. So on meta the model's parameters and buffers, and the inputs, are swapped for fake CPU
tensors (``FakeTensorMode``: a shape, a dtype and a device, no storage) for the duration, CPU autocast runs on
them, and the meta tensors are put back afterwards. On CPU and meta the cast lists are CPU autocast's; on CUDA,
CUDA's (which also keep softmax, layer norm and a few pointwise ops in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map_only

from modelprof.reports.kinds import Report

#: The 16-bit type autocast uses, by device type.
AMP_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """What to count with: the inputs (fake on meta under autocast), the context to run the forward and the loss
    in, and the device and autocast type the report names."""

    args: tuple
    kwargs: dict
    device: str
    dtype: torch.dtype | None = None  #: the autocast type, None without autocast

    def autocast(self) -> AbstractContextManager:
        """The autocast context (CPU autocast on meta), or a no-op."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu" if self.device == "meta" else self.device, dtype=self.dtype)

    def label(self, report: Report) -> Report:
        """``report`` with the device it was asked for, and its dtype naming the autocast type."""
        if self.dtype is None:
            return report
        return replace(report, device=self.device,
                       dtype=f"{report.dtype}, autocast {str(self.dtype).removeprefix('torch.')}")


@contextlib.contextmanager
def mixed_precision(model: nn.Module, args: tuple, kwargs: dict, enabled: bool) -> Iterator[Precision]:
    """The :class:`Precision` to count ``model(*args, **kwargs)`` with. Disabled, it changes nothing; on the meta
    device the model and the inputs are fake CPU tensors inside this context (the model's own meta tensors are back
    when it ends, whatever happens)."""
    device = _device_of(model, args, kwargs)
    if not enabled:
        yield Precision(args, kwargs, device.type)
        return
    dtype = AMP_DTYPES.get(device.type, torch.bfloat16)
    if device.type != "meta":
        yield Precision(args, kwargs, device.type, dtype)
        return
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    cpu = torch.device("cpu")

    def fake(tensor: torch.Tensor) -> torch.Tensor:
        return FakeTensor(fake_mode, tensor.detach(), cpu) if tensor.device.type == "meta" else tensor

    swapped = _swap_tensors(model, fake)
    try:
        with fake_mode:
            fake_args, fake_kwargs = tree_map_only(torch.Tensor, fake, (args, kwargs))
            yield Precision(fake_args, fake_kwargs, "meta", dtype)
    finally:
        for module, kind, name, original in swapped:
            getattr(module, kind)[name] = original


def _swap_tensors(model: nn.Module, make: Callable[[torch.Tensor], torch.Tensor]) -> list[tuple]:
    """Replace every parameter and buffer of ``model`` by ``make(tensor)`` (a shared tensor gets one replacement);
    the (module, dict name, key, original) of each, to put them back."""
    made: dict[int, torch.Tensor] = {}
    swapped = []
    for module in model.modules():
        for kind in ("_parameters", "_buffers"):
            table = getattr(module, kind)
            for name, tensor in list(table.items()):
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    new = make(tensor)
                    if isinstance(tensor, nn.Parameter):
                        new = nn.Parameter(new, requires_grad=tensor.requires_grad)
                    made[id(tensor)] = new
                swapped.append((module, kind, name, tensor))
                table[name] = made[id(tensor)]
    return swapped


def _device_of(model: nn.Module, args: tuple, kwargs: dict) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    found = [t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    return found[0] if found else torch.device("cpu")
