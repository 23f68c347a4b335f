"""Which module of a model is running, and what each module did: names, the running-module stack, calls, shapes.

A :class:`ModuleTracker` is the one place that follows a model's module tree while it runs; collectors ask it
which module to charge (:attr:`ModuleTracker.current`) and read the names, calls and shapes afterwards.

NB: PyTorch's ``torch.utils.module_tracker.ModuleTracker`` was the model, but it keeps a *set* of running modules
(no innermost one), names them by class path rather than by ``named_modules`` name, and hooks every module in the
process; a collector charging ops needs the innermost module of one model, so this tracker keeps a stack.

It follows calls through each module's ``forward`` rather than through forward hooks: while the tracker is entered
every module has an instance attribute ``forward`` that wraps its own (and the attribute is gone, or what it was,
on exit). A module with hooks takes ``nn.Module``'s slow call path, about 15 µs a call; a wrapped ``forward`` keeps
the fast one, which is most of what counting a convolutional network costs beyond the forward itself.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from modelprof.metrics import Phase
from modelprof.prepare.base import forwards_replaced
from modelprof.reports.stats import ROOT, ModuleInfo, Shape


def tensors_in(*values: Any) -> list[torch.Tensor]:
    """Every tensor inside ``values``: nested tuples, lists and dicts are walked; other containers, such as a
    model's output dataclass, are read through pytree."""
    found: list[torch.Tensor] = []
    _collect(values, found)
    return found


def _collect(value: Any, found: list[torch.Tensor]) -> None:
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif isinstance(value, tuple | list):
        for item in value:
            _collect(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif value is not None and not isinstance(value, int | float | bool | str):
        found.extend(t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor))


def tensor_shapes(*values: Any) -> tuple[Shape, ...]:
    """The shape of every tensor inside ``values`` (see :func:`tensors_in`)."""
    if len(values) == 1 and isinstance(values[0], torch.Tensor):  # a module's output, most often
        return (tuple(values[0].shape),)
    return tuple(tuple(t.shape) for t in tensors_in(*values))


def class_name(module: nn.Module) -> str:
    """The name of the module's own class: FSDP2 and DDP's ``replicate`` (and FSDP2's) swap a module's class for a
    generated subclass (``FSDPBlock``, ``DDPNet``, ``ReplicateNet``) whose last base is the class the model was
    written with."""
    cls = type(module)
    if cls.__name__.startswith(("FSDP", "DDP", "Replicate")) and len(cls.__bases__) == 2:
        return cls.__bases__[1].__name__
    return cls.__name__


def is_leaf(module: nn.Module) -> bool:
    """True for a module with no children."""
    return next(module.children(), None) is None


#: the key of an autograd node's ``metadata`` that names the row whose forward created the node
_ROW = "modelprof.row"


class ModuleTracker:
    """Follows one model while it runs: a context manager that hooks every module and removes the hooks on exit.

    ``names`` maps each module to its ``named_modules`` name (the top-level module is ``(root)``); ``stack`` is the
    running modules, innermost last; ``calls`` counts calls; ``shapes`` keeps the input and output shapes of each
    module's first call; ``leaf_order`` lists leaf modules in the order they first ran; ``phase`` is the phase of
    the step now running (the forward today).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names: dict[int, str] = {}
        self.modules: dict[str, nn.Module] = {}
        self.parameters: dict[int, nn.Parameter] = {}  #: every unique parameter, in ``parameters()`` order
        self.owners: dict[int, str] = {}  #: parameter id -> the first module holding it directly
        self.buffers: dict[int, torch.Tensor] = {}  #: every unique buffer
        for name, module in model.named_modules():  # one walk of the tree for all of the above
            name = name or ROOT
            self.names[id(module)] = name
            self.modules[name] = module
            for p in module._parameters.values():
                if p is not None and id(p) not in self.parameters:
                    self.parameters[id(p)] = p
                    self.owners[id(p)] = name
            for b in module._buffers.values():
                if b is not None:
                    self.buffers.setdefault(id(b), b)
        self.stack: list[str] = []
        self.calls: Counter = Counter()
        self.shapes: dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]] = {}
        self.leaf_order: dict[str, None] = {}
        self.phase = Phase.FORWARD
        self.override: str | None = None  #: a row that takes every op while set (the loss, the optimizer)
        self.extra_rows: dict[str, str] = {}  #: rows that are not modules -> their type
        self.backward_default = ROOT  #: the row of backward ops that run outside any node (the seed gradient)
        self.recomputing = 0  #: how many forwards the backward is running again (activation checkpointing)
        #: called as ``after_call(module, name, args, output)`` when a module returns (a peer's module rules)
        self.after_call: Any = None
        self._patched = contextlib.ExitStack()

    @property
    def current(self) -> str:
        """The row to charge now: the override when set; in the backward, the module whose forward created the
        running autograd node; else the innermost running module (the top-level one when none is)."""
        if self.override is not None:
            return self.override
        if self.phase is Phase.BACKWARD:
            node = torch._C._current_autograd_node()
            return self.backward_default if node is None else node.metadata.get(_ROW, self.backward_default)
        return self.stack[-1] if self.stack else ROOT

    def tag(self, output: Any, name: str) -> None:
        """Mark every autograd node behind ``output`` not yet marked as created by ``name`` (inner modules finish
        first, so each node ends up with the innermost module that made it). The mark is in the node's own
        ``metadata``: holding the nodes would keep alive the saved tensors of the ones no backward runs (an output
        nothing reads, such as an attention's weights, and, under checkpointing, their recomputed values)."""
        pending = [t.grad_fn for t in tensors_in(output)]
        while pending:
            node = pending.pop()
            if node is None:
                continue
            metadata = node.metadata
            if _ROW in metadata:
                continue
            metadata[_ROW] = name
            pending.extend(child for child, _ in node.next_functions)

    def _wrap(self, module: nn.Module, name: str, forward: Any) -> Any:
        """``forward`` of ``module``, with the stack, calls and shapes kept around it. A forward that raises leaves
        its module on the stack, so the error can name the layer that was running."""
        leaf = is_leaf(module)
        stack, calls, shapes = self.stack, self.calls, self.shapes

        def tracked(*args: Any, **kwargs: Any) -> Any:
            if self.phase is Phase.BACKWARD:  # a checkpointed forward run again: not another call
                return self._recomputed(name, forward, args, kwargs)
            stack.append(name)
            calls[name] += 1
            first = name not in shapes
            if first:
                one = not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor)
                shapes[name] = ((tuple(args[0].shape),) if one else tensor_shapes(args, kwargs), ())
                if leaf:
                    self.leaf_order.setdefault(name)
            output = forward(*args, **kwargs)
            stack.pop()
            if self.after_call is not None:
                self.after_call(module, name, args, output)
            if first:
                shapes[name] = (shapes[name][0], tensor_shapes(output))
            if torch.is_grad_enabled():
                self.tag(output, name)
            return output

        tracked.__wrapped__ = forward  # inspect.signature(module.forward) still reads the module's own
        return tracked

    def _recomputed(self, name: str, forward: Any, args: tuple, kwargs: dict) -> Any:
        """A forward the backward runs again (activation checkpointing), with ``recomputing`` set while it runs
        (its module is on the stack, and off it however it ends: the checkpoint stops a recomputation early by
        raising). Its output is not tagged: its graph only feeds the nodes tagged in the forward, and holding its
        nodes would keep their saved tensors alive."""
        self.stack.append(name)
        self.recomputing += 1
        try:
            return forward(*args, **kwargs)
        finally:
            self.recomputing -= 1
            self.stack.pop()

    def __enter__(self) -> ModuleTracker:
        wrappers = ((module, functools.partial(self._wrap, module, name)) for name, module in self.modules.items()
                    if not isinstance(module, torch.jit.ScriptModule))  # a script's forward is no Python attribute
        self._patched = contextlib.ExitStack()
        self._patched.enter_context(forwards_replaced(wrappers))
        return self

    def __exit__(self, *exc: object) -> None:
        self._patched.close()

    def type_of(self, name: str) -> str:
        """The class name of the module called ``name`` (or the type of an extra row)."""
        if name in self.extra_rows:
            return self.extra_rows[name]
        return class_name(self.modules[name])

    def is_container(self, name: str) -> bool:
        """True for a module with children (extra rows are not modules)."""
        module = self.modules.get(name)
        return module is not None and any(child is not None for child in module._modules.values())

    def input_shapes(self, name: str) -> tuple[Shape, ...]:
        """The input shapes of the first call of ``name`` (empty when it never ran)."""
        return self.shapes.get(name, ((), ()))[0]

    def infos(self) -> dict[str, ModuleInfo]:
        """What folding needs of every module: its type and the shapes of its first call."""
        return {name: ModuleInfo(class_name(module), *self.shapes.get(name, ((), ())))
                for name, module in self.modules.items()}
