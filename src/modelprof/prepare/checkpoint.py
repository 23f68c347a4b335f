"""``--checkpoint``: activation checkpointing of the modules of some classes (``auto``: the repeated block).

Each chosen module's forward runs through ``torch.utils.checkpoint.checkpoint`` (non-reentrant): autograd keeps
the module's inputs only, and the backward runs its forward again to rebuild what it needs. So a training step's
saved activations and peak shrink, and its backward grows by those forwards; counting sees both, as it sees every
op. The forward is wrapped as an instance attribute, so the module keeps its name in the report, and the attribute
is gone (or what it was) on exit.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelprof.errors import UsageError
from modelprof.prepare.base import Run, Transform, forwards_replaced

if TYPE_CHECKING:
    from torch import nn

    from modelprof.workload import Workload

#: The word that asks for the repeated block.
AUTO = "auto"


def checkpointed_modules(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    """The modules of ``model`` whose class is named in ``names`` (``auto``: the class with children that has the
    most instances, at least two), outermost first; a name no module has is refused, naming the classes there are."""
    modules = list(model.modules())
    wanted = set(names)
    if AUTO in wanted:
        wanted.discard(AUTO)
        blocks = Counter(type(m).__name__ for m in modules[1:] if any(True for _ in m.children()))
        repeated = [name for name, count in blocks.most_common() if count >= 2]
        if not repeated:
            raise UsageError("--checkpoint auto: the model has no repeated block; name the classes to checkpoint")
        wanted.add(repeated[0])
    present = {type(m).__name__ for m in modules}
    missing = sorted(wanted - present)
    if missing:
        known = ", ".join(sorted(present)[:12])
        raise UsageError(f"--checkpoint: no module of class {', '.join(missing)} in the model; it has {known} ...")
    chosen = [m for m in modules if type(m).__name__ in wanted]
    inside = {id(c) for m in chosen for c in m.modules() if c is not m}
    return [m for m in chosen if id(m) not in inside]  # a module inside a checkpointed one is recomputed already


class Checkpoint(Transform):
    """Activation checkpointing: a training step keeps the chosen modules' inputs only and recomputes them."""

    option = "--checkpoint"

    def wanted(self, workload: Workload) -> bool:
        return bool(workload.checkpoint.modules)

    def refusal(self, workload: Workload) -> str | None:
        if workload.checkpoint.modules and workload.training is None:
            return "--checkpoint trades memory for recomputation in a training step; add --train"
        return None

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        if workload.parallel.pp > 1:  # torch.export would trace through the checkpoint and keep every activation:
            yield run  # a pipeline stage's modules are checkpointed after the cut (checkpointed_forwards)
            return
        with checkpointed_forwards(checkpointed_modules(run.model, workload.checkpoint.modules)):
            yield run


def checkpointed_forwards(modules: list[Any]) -> contextlib.AbstractContextManager:
    """Each of ``modules`` runs its forward through ``torch.utils.checkpoint`` for the duration."""
    return forwards_replaced((module, functools.partial(_checkpointed, module)) for module in modules)


def _checkpointed(module: Any, forward: Any) -> Any:
    """``module``'s ``forward`` through ``torch.utils.checkpoint`` (non-reentrant). Where the forward is its class's,
    the wrapper is a method bound to the module, so a copy of the model (sharding copies a model it does not own)
    checkpoints the copy's own forward, not the original's."""
    from torch.utils.checkpoint import checkpoint

    own = "forward" in vars(module)  # an instance attribute of its own: wrap that one as it is
    run = forward if own else type(module).forward

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        return checkpoint(run, *args, use_reentrant=False, context_fn=_function_modes_kept, **kwargs)

    checkpointed.__wrapped__ = run  # inspect.signature still reads the module's own
    return checkpointed if own else types.MethodType(checkpointed, module)


def _function_modes_kept() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """``checkpoint``'s ``context_fn``: the recomputation runs under the torch function modes the forward ran under
    (the backward runs without them), so it runs the same ops (on meta, ``AttentionAsOnCPU``'s attention kernel:
    another would save tensors of other shapes, which the checkpoint refuses)."""
    from torch.overrides import _get_current_function_mode_stack

    modes = _get_current_function_mode_stack()

    @contextlib.contextmanager
    def recomputing() -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for mode in modes:
                stack.enter_context(mode)
            yield

    return contextlib.nullcontext(), recomputing()
