"""Which module of a model is running, and what each module did: names, the running-module stack, calls, shapes.

A :class:`ModuleTracker` is the one place that follows a model's module tree while it runs; collectors ask it
which module to charge (:attr:`ModuleTracker.current`) and read the names, calls and shapes afterwards.

NB: PyTorch's ``torch.utils.module_tracker.ModuleTracker`` was the model, but it keeps a *set* of running modules
(no innermost one), names them by class path rather than by ``named_modules`` name, and hooks every module in the
process; a collector charging ops needs the innermost module of one model, so this tracker keeps a stack.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from modelprof.counting.formulas import leaves
from modelprof.metrics import Phase
from modelprof.reports.stats import ROOT, ModuleInfo, Shape


def tensors_in(*values: Any) -> list[torch.Tensor]:
    """Every tensor inside ``values``: nested tuples, lists and dicts are walked; other containers, such as a
    model's output dataclass, are read through pytree."""
    found = []
    for leaf in leaves(values):
        if isinstance(leaf, torch.Tensor):
            found.append(leaf)
        elif leaf is not None and not isinstance(leaf, int | float | bool | str):
            found.extend(t for t in tree_flatten(leaf)[0] if isinstance(t, torch.Tensor))
    return found


def tensor_shapes(*values: Any) -> tuple[Shape, ...]:
    """The shape of every tensor inside ``values`` (see :func:`tensors_in`)."""
    return tuple(tuple(t.shape) for t in tensors_in(*values))


def is_leaf(module: nn.Module) -> bool:
    """True for a module with no children."""
    return next(module.children(), None) is None


class ModuleTracker:
    """Follows one model while it runs: a context manager that hooks every module and removes the hooks on exit.

    ``names`` maps each module to its ``named_modules`` name (the top-level module is ``(root)``); ``stack`` is the
    running modules, innermost last; ``calls`` counts calls; ``shapes`` keeps the input and output shapes of each
    module's first call; ``leaf_order`` lists leaf modules in the order they first ran; ``phase`` is the phase of
    the step now running (the forward today).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names: dict[int, str] = {id(m): (name or ROOT) for name, m in model.named_modules()}
        self.modules: dict[str, nn.Module] = {self.names[id(m)]: m for m in model.modules()}
        self.stack: list[str] = []
        self.calls: Counter = Counter()
        self.shapes: dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]] = {}
        self.leaf_order: dict[str, None] = {}
        self.phase = Phase.FORWARD
        self.override: str | None = None  #: a row that takes every op while set (the loss, the optimizer)
        self.extra_rows: dict[str, str] = {}  #: rows that are not modules -> their type
        self.nodes: dict[Any, str] = {}  #: autograd node -> the module whose forward created it
        self.backward_default = ROOT  #: the row of backward ops that run outside any node (the seed gradient)
        self._handles: list[Any] = []

    @property
    def current(self) -> str:
        """The row to charge now: the override when set; in the backward, the module whose forward created the
        running autograd node; else the innermost running module (the top-level one when none is)."""
        if self.override is not None:
            return self.override
        if self.phase is Phase.BACKWARD:
            return self.nodes.get(torch._C._current_autograd_node(), self.backward_default)
        return self.stack[-1] if self.stack else ROOT

    def tag(self, output: Any, name: str) -> None:
        """Mark every autograd node behind ``output`` not yet marked as created by ``name`` (inner modules finish
        first, so each node ends up with the innermost module that made it)."""
        pending = [t.grad_fn for t in tensors_in(output)]
        while pending:
            node = pending.pop()
            if node is None or node in self.nodes:
                continue
            self.nodes[node] = name
            pending.extend(child for child, _ in node.next_functions)

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = self.names[id(module)]
        self.stack.append(name)
        self.calls[name] += 1
        if name not in self.shapes:
            self.shapes[name] = (tensor_shapes(args, kwargs), ())
        if is_leaf(module):
            self.leaf_order.setdefault(name)

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        name = self.stack.pop()
        if not self.shapes[name][1]:
            self.shapes[name] = (self.shapes[name][0], tensor_shapes(output))
        if torch.is_grad_enabled():
            self.tag(output, name)

    def __enter__(self) -> ModuleTracker:
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post_hook, with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def type_of(self, name: str) -> str:
        """The class name of the module called ``name`` (or the type of an extra row)."""
        if name in self.extra_rows:
            return self.extra_rows[name]
        return type(self.modules[name]).__name__

    def is_container(self, name: str) -> bool:
        """True for a module with children (extra rows are not modules)."""
        return name in self.modules and not is_leaf(self.modules[name])

    def input_shapes(self, name: str) -> tuple[Shape, ...]:
        """The input shapes of the first call of ``name`` (empty when it never ran)."""
        return self.shapes.get(name, ((), ()))[0]

    def infos(self) -> dict[str, ModuleInfo]:
        """What folding needs of every module: its type and the shapes of its first call."""
        return {name: ModuleInfo(type(module).__name__, *self.shapes.get(name, ((), ())))
                for name, module in self.modules.items()}
