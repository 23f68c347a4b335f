"""What a transform is: a unit that turns the run it is given into the run it hands on, and undoes itself.

Torch is imported inside the functions, so the command line can check a workload (:func:`Transform.refusal`)
without it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from modelprof.reports.stats import Report
    from modelprof.workload import Workload


@dataclass(frozen=True)
class Run:
    """The model and the inputs that run, as the transforms so far made them.

    ``device`` is the device the report names; ``autocast_dtype`` the 16-bit type autocast runs ops in (None
    without autocast); ``owned`` is True when modelprof built the model itself, so a transform need not keep what
    it replaced in order to put it back."""

    model: Any
    args: tuple
    kwargs: dict
    device: str
    owned: bool = False
    autocast_dtype: Any = None
    parallel: Any = None  #: the job (a :class:`~modelprof.workload.Parallel`) this run is one rank of, or None
    #: on meta, the ``FakeTensorMode`` whose fake CPU tensors stand in for the meta ones (:func:`on_fake_cpu`)
    fake_mode: Any = None
    #: the 16-bit type FSDP's ``MixedPrecisionPolicy`` gathers parameters in (``--amp`` with ``--fsdp``/``--zero``,
    #: in place of autocast), or None
    mixed_precision: Any = None
    #: ``--pp``: this rank's pipeline stage (torch's ``_PipelineStage``; ``model`` is its submodule), or its stages (a
    #: list; ``model`` a ``ModuleDict`` of their submodules by stage), or None
    pipeline: Any = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward and the loss (CPU autocast on meta), or a no-op."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu" if self.device == "meta" else self.device, dtype=self.autocast_dtype)

    def label(self, report: Report) -> Report:
        """``report`` with the device it was asked for, its dtype naming the autocast type, and the job it is one
        rank of."""
        if self.parallel is not None:
            from modelprof.prepare.parallel import held_parameters
            from modelprof.reports.stats import ParallelLayout

            report = replace(report, parallel=ParallelLayout.of(self.parallel, held_parameters(self.model)))
        if self.fake_mode is not None:  # fake CPU tensors stood in for meta ones
            report = replace(report, device=self.device)
        how, dtype = (("FSDP mixed precision", self.mixed_precision) if self.mixed_precision is not None
                      else ("autocast", self.autocast_dtype))
        if dtype is None:
            return report
        return replace(report, dtype=f"{report.dtype}, {how} {str(dtype).removeprefix('torch.')}")

    def with_inputs(self, make: Callable[[Any], Any]) -> Run:
        """This run with ``make`` applied to every tensor input."""
        import torch
        from torch.utils._pytree import tree_map_only

        args, kwargs = tree_map_only(torch.Tensor, make, (self.args, self.kwargs))
        return replace(self, args=args, kwargs=kwargs)


class Transform:
    """One way of changing the model before it runs (dtype, channels-last, autocast; later TP, checkpointing,
    compile, FSDP). A subclass says which option asks for it, what it cannot go with, and how it applies; the
    context :meth:`apply` returns undoes it on exit, whatever happens, so a user's model is left as it was."""

    #: the command-line option that asks for it
    option: ClassVar[str] = ""

    def wanted(self, workload: Workload) -> bool:
        """True when ``workload`` asks for this transform."""
        raise NotImplementedError

    def refusal(self, workload: Workload) -> str | None:
        """Why ``workload`` cannot run with this transform (one line naming the fix), or None."""
        return None

    def apply(self, run: Run, workload: Workload) -> contextlib.AbstractContextManager[Run]:
        """A context that yields the transformed run and undoes the transform on exit."""
        raise NotImplementedError


@contextlib.contextmanager
def tensors_replaced(run: Run, make: Callable[[Any], Any]) -> Iterator[None]:
    """Every parameter and buffer of ``run.model`` replaced by ``make(tensor)`` (a shared tensor gets one
    replacement, a parameter stays a parameter with its ``requires_grad``); the originals are put back on exit
    unless the model is ``owned``."""
    from torch import nn

    made: dict[int, Any] = {}
    swapped = []
    for module in run.model.modules():
        for kind in ("_parameters", "_buffers"):
            table = getattr(module, kind)
            for name, tensor in list(table.items()):
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    new = make(tensor)
                    if isinstance(tensor, nn.Parameter) and new is not tensor:
                        new = nn.Parameter(new, requires_grad=tensor.requires_grad)
                    made[id(tensor)] = new
                if not run.owned:
                    swapped.append((table, name, tensor))
                table[name] = made[id(tensor)]
    try:
        yield
    finally:
        for table, name, original in swapped:
            table[name] = original


_NONE = object()  #: an object had no instance attribute of that name of its own


@contextlib.contextmanager
def attributes_wrapped(wrappers: Iterable[tuple[Any, str, Callable[[Any], Any]]]) -> Iterator[None]:
    """For each ``(obj, name, wrap)``, ``obj.name`` replaced by ``wrap(obj.name)``, an instance attribute (the
    object keeps its class); on exit the attribute is gone again, or is what it was (one the instance had of its
    own)."""
    patched: list[tuple[Any, str, Any]] = []
    try:
        for obj, name, wrap in wrappers:
            patched.append((obj, name, obj.__dict__.get(name, _NONE)))
            obj.__dict__[name] = wrap(getattr(obj, name))
        yield
    finally:
        for obj, name, own in reversed(patched):
            if own is _NONE:
                obj.__dict__.pop(name, None)
            else:
                obj.__dict__[name] = own


def forwards_replaced(wrappers: Iterable[tuple[Any, Callable[[Any], Any]]]) -> contextlib.AbstractContextManager:
    """For each ``(module, wrap)``, the module's ``forward`` replaced by ``wrap(module.forward)``
    (:func:`attributes_wrapped`), so the module keeps its class and name and calls keep ``nn.Module``'s fast
    path."""
    return attributes_wrapped((module, "forward", wrap) for module, wrap in wrappers)


@contextlib.contextmanager
def on_fake_cpu(run: Run) -> Iterator[Run]:
    """On meta, the run with its parameters, buffers and inputs swapped for fake CPU tensors (``FakeTensorMode``: a
    shape, a dtype and a device, no storage), for what the meta device cannot run (autocast, which acts only on
    devices with an autocast key; FSDP and DTensor, which refuse meta tensors); the meta tensors are put back on exit
    even when modelprof built the model (a meta model stays meta). The mode, ``run.fake_mode``, is not entered here:
    the caller enters it where the run runs. Elsewhere, or swapped already, the run as it is."""
    if run.device != "meta" or run.fake_mode is not None:
        yield run
        return
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    cpu = torch.device("cpu")

    def fake(tensor):
        return FakeTensor(fake_mode, tensor.detach(), cpu) if tensor.device.type == "meta" else tensor

    with tensors_replaced(replace(run, owned=False), fake):
        yield replace(run.with_inputs(fake), fake_mode=fake_mode)


def device_of(model: Any, args: tuple, kwargs: dict) -> Any:
    """The device of the model's first parameter or buffer, else of the first tensor input, else the CPU."""
    import torch
    from torch.utils._pytree import tree_leaves

    for tensor in itertools.chain(model.parameters(), model.buffers()):  # the first one only: no list of all
        return tensor.device
    found = [t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    return found[0] if found else torch.device("cpu")
