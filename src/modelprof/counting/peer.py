"""Counting a forward as a peer tool counts it: a :class:`~modelprof.counting.conventions.Convention`'s three
tables put to work in one counting session.

* Op rules become the cost mode's formula table: every op keeps modelprof's memory traffic, and its ``flops`` is
  the convention's count (0 for an op it does not list). A convention that sees ops as autograd dispatches them
  (``as_autograd``) has the forward run with autograd on (:func:`~modelprof.counting.runtime.inference`), so
  composite ops reach the cost mode as their parts and kernels are chosen as its users' runs choose them.
* Module rules run when a module of a listed class returns, charged to that module's row, unless a module around
  it is counted already. A module that two parents hold is charged once per parent, as these tools add their
  per-module counts up over the tree.
* Function rules replace the functions they name (``torch.nn.functional.relu``, ``torch.Tensor.matmul``) for the
  count, as the peer patches them, and charge the running module (or the ``(functions)`` row).

The count is the ``flops`` column; MAdd is 0 (no peer defines it); MemRead and MemWrite stay modelprof's.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from modelprof.counting.conventions import CONVENTIONS, Convention
from modelprof.counting.formulas import FORMULAS, Cost, Formula, io_cost
from modelprof.errors import UsageError

aten = torch.ops.aten

#: The row that takes the count of patched functions when a convention keeps them apart (ptflops).
FUNCTIONS_ROW = "(functions)"


def convention_named(name: str | Convention | None) -> Convention | None:
    """The convention called ``name`` (a Convention passes through); a name not known is refused."""
    if name is None or isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise UsageError(f"unknown convention '{name}'; choose one of {', '.join(CONVENTIONS)}",
                         option="convention") from None


def _counted(rule: Any, base: Formula | None) -> Formula:
    """A formula whose Flops is ``rule``'s count (0 without a rule) and whose memory traffic is ``base``'s."""

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        memory = base(args, kwargs, out) if base is not None else io_cost(args, out, kwargs)
        return Cost(0, int(rule(args, kwargs, out)) if rule is not None else 0, memory.mem_read, memory.mem_write)

    return formula


@functools.cache
def formula_table(name: str) -> Mapping[Any, Formula]:
    """The cost mode's table under convention ``name`` (built once per process, so the cost cache keeps working)."""
    convention = CONVENTIONS[name]
    rules = {getattr(aten, op): rule for op, rule in convention.ops.items() if hasattr(aten, op)}
    table = {packet: _counted(rules.get(packet), formula) for packet, formula in FORMULAS.items()}
    table.update({packet: _counted(rule, FORMULAS.get(packet)) for packet, rule in rules.items()})
    return table


def _resolve(path: str) -> tuple[Any, str] | None:
    """(owner, attribute) of a dotted path such as ``torch.nn.functional.relu`` or ``torch.Tensor.matmul``; None
    when it does not exist in this version, or its module is not imported (no model built here can hold a class of a
    module never imported, and importing timm or torchvision only to look would cost seconds, or fail)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        owner: Any = sys.modules.get(".".join(parts[:cut]))
        if owner is None:
            continue
        for attr in parts[cut:-1]:
            owner = getattr(owner, attr, None)
        return (owner, parts[-1]) if owner is not None and hasattr(owner, parts[-1]) else None
    return None


def module_rules(convention: Convention) -> dict[type, Any]:
    """The convention's module rules by class (classes that cannot be imported here are left out)."""
    rules = {}
    for path, rule in convention.modules.items():
        found = _resolve(path)
        if found is not None:
            rules[getattr(*found)] = rule
    return rules


class PeerCounter:
    """Charges a convention's module and function rules while a session runs (its op rules are the mode's table).

    ``charge(row, count)`` adds to a row's ``flops`` in the current phase; ``batch`` divides module counts for a
    convention that reports them per sample.
    """

    def __init__(self, convention: Convention, tracker: Any, charge: Any, batch: int) -> None:
        self.convention = convention
        self.tracker = tracker
        self.charge = charge
        self.batch = max(batch, 1) if convention.per_sample else 1
        self.rules = module_rules(convention)
        self.failed: dict[str, int] = {}
        # how many times each module is reached walking the tree from the root: a module held by two parents is
        # summed twice by the tools that add up per-module counts over the tree (thop, ptflops, calflops)
        self.paths = Counter(id(m) for _, m in tracker.model.named_modules(remove_duplicate=False))

    def after_module(self, module: Any, name: str, args: tuple, output: Any) -> None:
        """A module returned: charge its class's rule unless a module around it is counted already."""
        rule = self.rules.get(type(module))
        if rule is None:
            return
        tracker = self.tracker
        if any(type(tracker.modules[outer]) in self.rules for outer in tracker.stack):
            return
        try:
            count = int(rule(module, args, output))
        except Exception:  # the peer's rule does not fit this call (the peer itself fails here)
            self._failed(f"{type(module).__name__} (module rule)")
            return
        paths = self.paths[id(module)]
        self.charge(name, count * paths * (paths if self.convention.hook_per_path else 1) // self.batch)

    @contextlib.contextmanager
    def functions_patched(self) -> Iterator[None]:
        """Every function the convention names replaced by a counting wrapper; the originals back on exit."""
        restore: list[tuple[Any, str, Any, bool]] = []
        try:
            for path, rule in self.convention.functions.items():
                found = _resolve(path)
                if found is None:
                    continue
                owner, attr = found
                original = getattr(owner, attr)
                restore.append((owner, attr, owner.__dict__.get(attr), attr in owner.__dict__))
                setattr(owner, attr, self._wrapper(path, rule, original))
            yield
        finally:
            for owner, attr, value, own in reversed(restore):
                if own:
                    setattr(owner, attr, value)
                else:
                    delattr(owner, attr)

    def _failed(self, what: str) -> None:
        self.failed[what] = self.failed.get(what, 0) + 1

    def _wrapper(self, path: str, rule: Any, original: Any) -> Any:
        apart = self.convention.functions_apart

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                count = int(rule(*args, **kwargs))
            except Exception:  # the peer's rule does not fit this call (the peer itself fails here)
                self._failed(f"{path} (function rule)")
                count = 0
            if apart:
                self.charge(FUNCTIONS_ROW, count)
            else:
                row = self.tracker.current
                module = self.tracker.modules.get(row)
                self.charge(row, count * (self.paths[id(module)] if module is not None else 1))
            return original(*args, **kwargs)

        counted.__wrapped__ = original
        return counted


__all__ = ["FUNCTIONS_ROW", "PeerCounter", "convention_named", "formula_table", "module_rules"]
