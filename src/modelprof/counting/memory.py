"""Memory a run needs: live tensor storage op by op, its peak and where it happens, and the activations autograd
saves for the backward, per layer.

Every storage an op creates is counted once while it is alive (a weak reference tells when it is freed); storages
that exist before the run (parameters, buffers, inputs) are the static part. The peak is the static part plus the
most op-made storage alive at any moment, phase by phase, with the row running then (in a training step, plus the
optimizer state a loop holds through every later forward and backward). Saved activations come from
``torch.autograd.graph.saved_tensors_hooks``: each storage autograd saves (parameters, buffers and inputs aside) is
charged once to the row whose forward saved it. Works on the meta device, where storages have sizes but no data.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from modelprof.counting.formulas import leaves
from modelprof.counting.tracker import ModuleTracker
from modelprof.metrics import Phase
from modelprof.reports.stats import ROOT, MemorySummary


def _storages(values: Iterable[Any]) -> dict[int, torch.UntypedStorage]:
    """Every distinct storage behind the tensors in ``values``, by identity."""
    found: dict[int, torch.UntypedStorage] = {}
    for value in values:
        if isinstance(value, torch.Tensor):
            for tensor in _holders(value):
                storage = tensor.untyped_storage()
                found[id(storage)] = storage
    return found


#: the tensor classes that hold their own memory, told apart at once from wrapper subclasses (most tensors are these)
_PLAIN = frozenset({torch.Tensor, torch.nn.Parameter, getattr(torch.nn, "Buffer", torch.Tensor)})


def _is_wrapper(tensor: torch.Tensor) -> bool:
    """A tensor subclass that wraps others and holds no memory of its own (a DTensor around this rank's shard, a
    functional collective's ``AsyncCollectiveTensor``); the plain-tensor test first, as most tensors are."""
    return type(tensor) not in _PLAIN and is_traceable_wrapper_subclass(tensor)


def _holders(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The tensors that hold ``tensor``'s memory: itself, or a wrapper's inner tensors (its ``__tensor_flatten__``
    attributes that are tensors), unwrapped in turn."""
    if not _is_wrapper(tensor):
        return [tensor]
    inner = (getattr(tensor, name) for name in tensor.__tensor_flatten__()[0])
    return [held for t in inner if isinstance(t, torch.Tensor) for held in _holders(t)]


def storage_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a storage shared by several tensors counts once)."""
    return sum(s.nbytes() for s in _storages(tensors).values())


#: What an op-made storage holds, for the make-up of the peak (PyTorch's ``MemTracker`` and ``FSDPMemTracker`` name
#: the same categories ACT, TEMP, GRAD, OPT, UNSHARDED_PARAM, ALL_GATHER and REDUCE_SCATTER): made in a forward (or
#: a forward recomputed in the backward), made in the backward, a parameter's gradient, made in the optimizer's
#: step, a parameter FSDP gathered, a buffer a collective works on.
ACTIVATIONS, TEMPORARY, GRADIENTS, OPTIMIZER_STATE = "activations", "temporary", "gradients", "optimizer state"
GATHERED, COMMUNICATION = "gathered parameters", "communication buffers"
MADE = (ACTIVATIONS, TEMPORARY, GRADIENTS, OPTIMIZER_STATE, GATHERED, COMMUNICATION)


class LiveMemory:
    """Op-made storage alive now and at its peak, by what it holds; a ``saved_tensors_hooks`` pack hook for saved
    activations."""

    def __init__(self, tracker: ModuleTracker, static: Iterable[torch.Tensor]) -> None:
        self.tracker = tracker
        static_storages = _storages(static)
        self.static = sum(s.nbytes() for s in static_storages.values())
        self._static_ids = set(static_storages)
        self._keep = list(static_storages.values())  # so their ids stay theirs for the run
        self._alive: dict[int, weakref.ref] = {}
        #: each live storage's ref -> (its id, its bytes, what it holds: one of MADE)
        self._sizes: dict[weakref.ref, tuple[int, int, str]] = {}
        self.live = 0
        self.parts = dict.fromkeys(MADE, 0)  #: the live bytes of each kind
        self.phase_peaks: dict[Phase, int] = {}  #: the most op-made storage alive in each phase
        self.phase_peak_at: dict[Phase, str] = {}  #: the row running at each phase's peak
        self.phase_parts: dict[Phase, dict[str, int]] = {}  #: ``parts`` at each phase's peak
        self._moved_in: Phase | None = None  #: the phase of the last peak check
        self.saved: Counter = Counter()
        self._saved: dict[int, weakref.ref] = {}

    def track(self, output: Any) -> None:
        """Count the storages ``output`` created (once each, until freed), as what the running phase makes
        (:meth:`made_now`; :meth:`holds` changes that), and move the peak."""
        live = self.live
        if isinstance(output, torch.Tensor):
            self._count(output)
        else:
            for value in leaves((output,)):
                if isinstance(value, torch.Tensor):
                    self._count(value)
        # only new storage can move the peak within a phase (not a view, an in-place op or a free one)
        if self.live > live or self.tracker.phase is not self._moved_in:
            self._moved()

    def _moved(self) -> None:
        phase = self._moved_in = self.tracker.phase
        if self.live > self.phase_peaks.get(phase, 0):
            self.phase_peaks[phase] = self.live
            self.phase_peak_at[phase] = self.tracker.current
            self.phase_parts[phase] = dict(self.parts)

    def made_now(self) -> str:
        """What a storage made now holds, by the phase (as ``MemTracker`` tells them apart): activations in a
        forward, and in a forward the backward recomputes (a checkpointed module running); temporaries in the
        backward; optimizer state in the optimizer's step."""
        phase = self.tracker.phase
        if phase is Phase.BACKWARD:
            return ACTIVATIONS if self.tracker.recomputing else TEMPORARY
        return OPTIMIZER_STATE if phase is Phase.OPTIMIZER else ACTIVATIONS

    def holds(self, tensors: Iterable[Any], kind: str) -> None:
        """The live storages behind ``tensors`` hold ``kind`` from now on (a gradient once it is a parameter's)."""
        parts, sizes = self.parts, self._sizes
        for storage in _storages(tensors).values():
            ref = self._alive.get(id(storage))
            if ref is not None and ref() is storage:
                key, size, old = sizes[ref]
                parts[old] -= size
                parts[kind] += size
                sizes[ref] = (key, size, kind)

    @contextlib.contextmanager
    def resizes_followed(self) -> Iterator[None]:
        """Follow storages resized in place while entered, as PyTorch's ``MemTracker`` does (``_track_resize``):
        FSDP2 frees a unit's gathered parameters with ``storage.resize_(0)`` and allocates them again with
        ``resize_(size)``, keeping the storage object, so no new storage and no freed one would tell."""
        original = torch.UntypedStorage.resize_

        def resize_(storage: torch.UntypedStorage, size: int) -> Any:
            out = original(storage, size)
            self.resized(storage)
            return out

        torch.UntypedStorage.resize_ = resize_  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.UntypedStorage.resize_ = original  # type: ignore[method-assign]

    def resized(self, storage: torch.UntypedStorage) -> None:
        """A storage now holds ``storage.nbytes()``: a tracked one changes its size; one made before the run
        (FSDP2's unsharded parameters, made at set-up and freed at once) counts from when it grows."""
        key, size = id(storage), storage.nbytes()
        ref = self._alive.get(key)
        if ref is not None and ref() is storage:  # FSDP's gathered parameter, whichever op first made it
            _, old, kind = self._sizes[ref]
            self.live += size - old
            self.parts[kind] -= old
            self.parts[GATHERED] += size
            self._sizes[ref] = (key, size, GATHERED)
        elif key not in self._static_ids and size:
            ref = weakref.ref(storage, self._freed)
            self._alive[key] = ref
            self._sizes[ref] = (key, size, GATHERED)
            self.live += size
            self.parts[GATHERED] += size
        self._moved()

    def _count(self, tensor: torch.Tensor) -> None:
        if _is_wrapper(tensor):
            for held in _holders(tensor):
                self._count(held)
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._alive or key in self._static_ids:
            return
        size = storage.nbytes()
        kind = self.made_now()
        ref = weakref.ref(storage, self._freed)  # one bound callback for all: the ref itself says which died
        self._alive[key] = ref
        self._sizes[ref] = (key, size, kind)
        self.live += size
        self.parts[kind] += size

    def _freed(self, ref: weakref.ref) -> None:
        key, size, kind = self._sizes.pop(ref)
        if self._alive.get(key) is ref:
            del self._alive[key]
            self.live -= size
            self.parts[kind] -= size

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        """The pack hook: charge a saved storage to the running row, once (a wrapper's inner tensors')."""
        if _is_wrapper(tensor):
            for held in _holders(tensor):
                self.pack(held)
            return tensor
        storage = tensor.untyped_storage()
        key = id(storage)
        seen = self._saved.get(key)
        if key not in self._static_ids and (seen is None or seen() is not storage):
            self._saved[key] = weakref.ref(storage)
            self.saved[self.tracker.current] += storage.nbytes()
        return tensor

    def summary(self, gradients: int = 0, optimizer: int = 0) -> MemorySummary:
        """The run's memory by category (the inputs are the static part less parameters and buffers).

        With ``optimizer`` state (a training step), the peaks are those of a step in a running training loop: the
        state the first step's optimizer creates is held through every later step's forward and backward, so it
        is added to their peaks (the optimizer phase counted it already, as it was made)."""
        params = storage_bytes(self.tracker.parameters.values())
        buffers = storage_bytes(self.tracker.buffers.values())
        held = {p: optimizer if p in (Phase.FORWARD, Phase.BACKWARD) else 0 for p in self.phase_peaks}
        peaks = {p: self.static + v + held[p] for p, v in self.phase_peaks.items()}
        phase = max(peaks, key=lambda p: peaks[p], default=Phase.FORWARD)
        row = self.phase_peak_at.get(phase, ROOT)
        inputs = self.static - params - buffers
        made = self.phase_parts.get(phase, {})
        parts = {"parameters": params, "buffers": buffers, "inputs": inputs, **{k: made.get(k, 0) for k in MADE}}
        parts[OPTIMIZER_STATE] += held.get(phase, 0)
        return MemorySummary(parameters=params, buffers=buffers, inputs=inputs,
                             gradients=gradients, optimizer=optimizer, saved=sum(self.saved.values()),
                             peak=max(peaks.values(), default=self.static), peak_row=row, peak_phase=str(phase),
                             phase_peaks={str(p): v for p, v in peaks.items()}, peak_parts=parts)
