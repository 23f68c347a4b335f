"""The counting collector: run one forward pass and attribute every aten op to the innermost module running.

Module hooks keep a stack of running modules; a ``TorchDispatchMode`` sees every aten op the forward runs
(from a module, a functional call or an operator in some ``forward``) and charges its cost, from the registry in
:mod:`modelprof.formulas`, to the module on top of the stack. Leaf modules get one row each; a container that runs
ops itself (a residual add, ``q @ k.transpose(-2, -1)``) gets a row of its own, so rows always add up to the totals.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from . import units
from .errors import ModelError, first_line
from .formulas import FORMULAS, FREE_OPS, Cost, TensorSpec, leaves
from .report import ROOT, InputInfo, LayerCost, ModuleInfo, Report, Shape, TotalCost


def tensor_shapes(*values: Any) -> tuple[Shape, ...]:
    """The shape of every tensor inside ``values`` (nested tuples, lists and dicts included; other containers,
    such as a model's output dataclass, are read through pytree)."""
    found = []
    for leaf in leaves(values):
        if isinstance(leaf, torch.Tensor):
            found.append(tuple(leaf.shape))
        elif leaf is not None and not isinstance(leaf, int | float | bool | str):
            found.extend(tuple(t.shape) for t in tree_flatten(leaf)[0] if isinstance(t, torch.Tensor))
    return tuple(found)


def _specs(value: Any) -> Any:
    """``value`` with every tensor replaced by its TensorSpec (op arguments: tensors in tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(value.shape), value.dtype.itemsize)
    if isinstance(value, list):
        return [_specs(v) for v in value]
    if isinstance(value, tuple):  # plain tuples, and the named tuples some ops return (torch.return_types)
        return tuple(_specs(v) for v in value)
    if isinstance(value, dict):
        return {k: _specs(v) for k, v in value.items()}
    return value


def _has_decomposition(func: Any) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")


class FormulaError(RuntimeError):
    """A cost formula raised: a bug in modelprof or in a user-registered formula, not in the model."""


class _Record:
    """Mutable accumulator for one row while the forward runs (plain ints: this is the hot path)."""

    __slots__ = ("madd", "flops", "mem_read", "mem_write", "ops")

    def __init__(self) -> None:
        self.madd = self.flops = self.mem_read = self.mem_write = 0
        self.ops: Counter = Counter()

    def add(self, cost: Cost, op: str) -> None:
        self.madd += cost.madd
        self.flops += cost.flops
        self.mem_read += cost.mem_read
        self.mem_write += cost.mem_write
        self.ops[op] += 1


class _CostMode(TorchDispatchMode):
    """Charges every aten op to the module on top of ``stack``, decomposing ops that have no formula."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.records: dict[str, _Record] = {}
        self.unsupported: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        formula = FORMULAS.get(packet)
        if formula is None:
            if packet in FREE_OPS:
                return func(*args, **kwargs)
            if _has_decomposition(func):
                with self:
                    result = func.decompose(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            self.unsupported[str(packet)] += 1
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        try:
            cost = formula(_specs(args), _specs(kwargs) if kwargs else kwargs, _specs(out))
        except Exception as exc:  # a formula's bug must not be blamed on the user's model
            raise FormulaError(f"the cost formula for {func} failed: {type(exc).__name__}: {exc}") from exc
        owner = self.stack[-1]
        record = self.records.get(owner)
        if record is None:
            record = self.records[owner] = _Record()
        record.add(cost, packet.__name__)
        return out


@contextlib.contextmanager
def eval_inference(model: nn.Module) -> Iterator[None]:
    """Eval mode under ``torch.inference_mode()`` for the duration; every module's training flag is restored
    afterwards, whatever happens. Shared by the counting and the timing collectors."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.inference_mode():
            yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def fused_attention_off() -> Iterator[None]:
    """MultiheadAttention's fused fast path off for the duration, then restored.

    The fast path (``_transformer_encoder_layer_fwd``) runs a whole encoder layer as one opaque op; turning it off
    lets its linear layers and attention be counted one by one.
    """
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    fastpath = mha.get_fastpath_enabled()
    try:
        mha.set_fastpath_enabled(False)
        yield
    finally:
        mha.set_fastpath_enabled(fastpath)


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def count_costs(
    model: nn.Module,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    model_name: str | None = None,
) -> Report:
    """Run ``model(*args, **kwargs)`` once and return the per-layer cost report.

    The model runs in eval mode under ``torch.inference_mode()``; afterwards it is exactly as before (no hooks,
    buffers or attributes left, training flags restored). A forward pass that fails raises
    :class:`~modelprof.errors.ModelError` naming the layer that was running and the shapes it received.
    """
    kwargs = kwargs or {}
    names = {id(m): (name or ROOT) for name, m in model.named_modules()}
    modules = {names[id(m)]: m for m in model.modules()}
    stack: list[str] = []
    calls: Counter = Counter()
    shapes: dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]] = {}
    order: dict[str, None] = {}
    mode = _CostMode(stack)

    def pre_hook(module: nn.Module, m_args: tuple, m_kwargs: dict) -> None:
        name = names[id(module)]
        stack.append(name)
        calls[name] += 1
        if name not in shapes:
            shapes[name] = (tensor_shapes(m_args, m_kwargs), ())
        if _is_leaf(module):
            order.setdefault(name)

    def post_hook(module: nn.Module, m_args: tuple, m_kwargs: dict, output: Any) -> None:
        name = stack.pop()
        if not shapes[name][1]:
            shapes[name] = (shapes[name][0], tensor_shapes(output))

    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
        with eval_inference(model), fused_attention_off(), mode:
            try:
                output = model(*args, **kwargs)
            except FormulaError:
                raise
            except Exception as exc:
                layer = stack[-1] if stack else ROOT
                kind = type(modules[layer]).__name__
                got = units.shapes(shapes.get(layer, ((), ()))[0]) or "no tensors"
                message = first_line(exc)
                raise ModelError(
                    f"the forward pass failed in layer '{layer}' ({kind}) with input shapes {got}: {message}; "
                    "check the input shapes and dtypes given with --shape/--input/--inputs"
                ) from exc
    finally:
        for handle in handles:
            handle.remove()

    for name in mode.records:
        order.setdefault(name)
    owner = _parameter_owners(model, names)
    for name in owner.values():
        order.setdefault(name)

    unique = {id(p): p for p in model.parameters()}
    params_by_row: Counter = Counter()
    for pid, name in owner.items():
        params_by_row[name] += unique[pid].numel()

    infos = {
        name: ModuleInfo(type(modules[name]).__name__, *shapes.get(name, ((), ())))
        for name in modules
    }
    rows = []
    for name in order:
        record = mode.records.get(name, _Record())
        module = modules[name]
        kind = type(module).__name__
        if not _is_leaf(module) and record.ops:
            kind = f"{kind} ({', '.join(record.ops)})"
        in_shape, out_shape = shapes.get(name, ((), ()))
        rows.append(LayerCost(name, kind, in_shape, out_shape, params_by_row[name], record.madd, record.flops,
                              record.mem_read, record.mem_write, calls[name]))

    total = TotalCost(
        name="total",
        type=type(model).__name__,
        input_shape=tensor_shapes(args, kwargs),
        output_shape=tensor_shapes(output),
        params=sum(p.numel() for p in unique.values()),
        madd=sum(r.madd for r in rows),
        flops=sum(r.flops for r in rows),
        mem_read=sum(r.mem_read for r in rows),
        mem_write=sum(r.mem_write for r in rows),
        calls=1,
        trainable_params=sum(p.numel() for p in unique.values() if p.requires_grad),
    )
    device, dtype = _device_and_dtype(model, args, kwargs)
    return Report(
        model=model_name or type(model).__name__,
        inputs=describe_inputs(args, kwargs),
        device=device,
        dtype=dtype,
        layers=tuple(rows),
        total=total,
        unsupported=dict(sorted(mode.unsupported.items())),
        modules=infos,
    )


def _parameter_owners(model: nn.Module, names: dict[int, str]) -> dict[int, str]:
    """Each unique parameter -> the first module (in ``named_modules`` order) that holds it directly."""
    owner: dict[int, str] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owner.setdefault(id(p), names[id(module)])
    return owner


def describe_inputs(args: tuple, kwargs: dict) -> tuple[InputInfo, ...]:
    """Name (None when positional), shape and dtype of every tensor input."""
    infos = [InputInfo(None, tuple(a.shape), str(a.dtype).removeprefix("torch.")) for a in args
             if isinstance(a, torch.Tensor)]
    infos += [InputInfo(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in kwargs.items()
              if isinstance(v, torch.Tensor)]
    return tuple(infos)


def _device_and_dtype(model: nn.Module, args: tuple, kwargs: dict) -> tuple[str, str]:
    tensors = [t for t in model.parameters()] or [t for t in tree_flatten((args, kwargs))[0]
                                                  if isinstance(t, torch.Tensor)]
    floats = [t for t in tensors if t.is_floating_point()]
    ref = (floats or tensors or [torch.empty(0)])[0]
    return ref.device.type, str(ref.dtype).removeprefix("torch.")


def profile(model: nn.Module, *args: Any, **kwargs: Any) -> Report:
    """Count Params, MAdd, Flops, MemRead and MemWrite of ``model(*args, **kwargs)``, per layer.

    >>> report = modelprof.profile(net, torch.randn(1, 3, 224, 224))
    >>> report.total.flops
    """
    return count_costs(model, args, kwargs)


