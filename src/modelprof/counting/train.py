"""The cost of one training step (``stats --train``): the forward with autograd, the backward of a loss, and an
optimizer step, each op charged to a row in its phase.

The forward's ops go to the running module, as in inference. Each autograd node is tagged with the module whose
forward created it (the innermost one), and in the backward each op goes to the module that created the node
autograd is running, so a layer's backward is on its own row. The loss's ops are the ``(loss)`` row, the optimizer
step's the ``(optimizer)`` row.

The model runs in training mode (dropout and batch norm behave as in training) and is left as it was: training
flags, buffers (batch norm's running statistics) and gradients are restored, and the optimizer steps with a
learning rate of 0, which runs every op of a real step but leaves the parameters unchanged (p + 0·u = p).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from modelprof.counting.formulas import Formula
from modelprof.counting.memory import GRADIENTS, storage_bytes
from modelprof.counting.runtime import attention_as_on_cpu, fused_attention_off, training_flags_kept
from modelprof.counting.session import session_for
from modelprof.counting.tracker import tensor_shapes, tensors_in
from modelprof.errors import ModelError, UsageError, one_line
from modelprof.loading.build import resolve
from modelprof.metrics import Phase
from modelprof.prepare import Run, prepared
from modelprof.prepare.base import attributes_wrapped
from modelprof.reports.stats import Report
from modelprof.workload import Optimizer, Precision, Training, Workload

LOSS = "(loss)"
OPTIMIZER = "(optimizer)"


def build_optimizer(optimizer: Optimizer | str, params: list[nn.Parameter], foreach: bool | None = False,
                    sharded: bool = False, group: Any = None) -> torch.optim.Optimizer:
    """The optimizer with a learning rate of 0. ``foreach=False`` (counting) runs one PyTorch op per tensor, so
    every op is counted; timing passes None, PyTorch's default. ``sharded`` (ZeRO-1): PyTorch's
    ``ZeroRedundancyOptimizer`` around it, over the process group ``group`` (None: every rank;
    :func:`zero1_group`)."""
    optimizer = Optimizer(optimizer)
    kind, options = {Optimizer.SGD: (torch.optim.SGD, {}), Optimizer.MOMENTUM: (torch.optim.SGD, {"momentum": 0.9}),
                     Optimizer.ADAM: (torch.optim.Adam, {})}.get(optimizer, (torch.optim.AdamW, {}))
    if sharded:
        return _zero_optimizer()(params, optimizer_class=kind, process_group=group, lr=0.0, foreach=foreach,
                                 **options)
    return kind(params, lr=0.0, foreach=foreach, **options)


@functools.cache
def _zero_optimizer() -> type:
    """PyTorch's ``ZeroRedundancyOptimizer``, whose broadcasts after the step send a DTensor parameter's local
    shard (tensor parallelism's: every rank of the group holds the same shard of it, as Megatron's distributed
    optimizer shards each tensor-parallel rank's own parameters over the data-parallel ranks); a broadcast of the
    DTensor itself has no sharding rule. A plain parameter is broadcast as PyTorch does. Overrides the private
    ``_broadcast_params_from_rank`` of its unbucketed path (``parameters_as_bucket_view=False``, the default)."""
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    class ZeroOfShards(ZeroRedundancyOptimizer):
        def _broadcast_params_from_rank(self, rank: int) -> list:
            source = dist.get_global_rank(self.process_group, rank)
            return [dist.broadcast(getattr(param.data, "_local_tensor", param.data), src=source,
                                   group=self.process_group, async_op=True)
                    for group in self._partition_parameters()[rank] for param in group["params"]]

    return ZeroOfShards


def optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state (a ZeroRedundancyOptimizer's: this rank's local optimizer's)."""
    local = getattr(optimizer, "optim", optimizer)
    return storage_bytes(t for values in local.state.values() for t in values.values())


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer steps (each once, shared ones too)."""
    return [p for p in model.parameters() if p.requires_grad]


def default_loss(output: Any, *inputs: Any) -> torch.Tensor:
    """The sum of every float output that takes part in autograd."""
    tensors = [t for t in tensors_in(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise ModelError("the model's output has no float tensor that requires grad, so there is no backward to "
                         "count; give a loss function, or check that the model has trainable parameters")
    return sum(t.sum() for t in tensors)


@contextlib.contextmanager
def training(model: nn.Module) -> Iterator[None]:
    """Training mode with autograd on; afterwards every training flag, buffer and gradient is as before."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        with training_flags_kept(model), torch.enable_grad(), fused_attention_off():
            model.train()
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for param, grad in grads:
            param.grad = grad


def count_train_step(model: nn.Module, args: tuple = (), kwargs: dict | None = None, *,
                     optimizer: Optimizer | str = Optimizer.ADAMW, loss: Callable[..., Any] | None = None,
                     model_name: str | None = None, formulas: Mapping[Any, Formula] | None = None,
                     precision: Precision | None = None) -> Report:
    """Count one training step of ``model(*args, **kwargs)``: forward, backward of ``loss(output, *args)`` (default:
    the sum of every float output), and an ``optimizer`` step; the model is left as it was. With
    ``precision=Precision(amp=True)`` the forward and the loss run under autocast, the backward and the optimizer
    step outside it, as PyTorch's AMP recipe has it (:mod:`modelprof.prepare.amp`)."""
    workload = Workload(Training(Optimizer(optimizer), loss), precision or Precision())
    with prepared(model, args, kwargs, workload) as run:
        return count_train(run, workload.training, model_name=model_name, formulas=formulas)


def count_train(run: Run, step: Training, *, model_name: str | None = None,
                formulas: Mapping[Any, Formula] | None = None) -> Report:
    """Count one training step of a prepared run: forward and loss (under the run's autocast), backward, and the
    optimizer's step, each op on its row and in its phase."""
    model, args, kwargs = run.model, run.args, run.kwargs
    loss = resolve_loss(step.loss)
    rows = {LOSS: getattr(loss, "__name__", "loss") if loss else "sum of outputs",
            OPTIMIZER: f"{step.optimizer.title} step"}
    params = trainable_parameters(model)
    if not params:
        raise ModelError("the model has no trainable parameters, so there is no training step to count; count "
                         "its forward instead")
    context = _training_context(model, run.device == "meta")
    with session_for(model, args, kwargs, phases=(Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER),
                     formulas=formulas, context=context, rows=rows) as session:
        tracker, memory = session.tracker, session.memory
        with _gradients_followed(model, params, memory):
            if run.pipeline is not None:
                # the last stage's schedule hands back every microbatch's output joined, which a training loop
                # drops before its optimizer steps (torchtitan's does): only its shape is kept, for the report
                output, shapes = None, tensor_shapes(_pipelined_step(session, run, loss))
            else:
                with run.autocast():
                    with torch.autograd.graph.saved_tensors_hooks(memory.pack, lambda tensor: tensor):
                        output = session.forward(args, kwargs)
                    with session.phase(Phase.FORWARD, LOSS):
                        value = _loss(loss, output, args)
                tracker.tag(value, LOSS)
                tracker.backward_default = LOSS
                with session.phase(Phase.BACKWARD):
                    _backward(value)
        grads = [p.grad for p in params if p.grad is not None]
        memory.holds(grads, GRADIENTS)  # FSDP's sharded gradients too, which it sets itself
        gradients = storage_bytes(grads)
        with session.phase(Phase.OPTIMIZER, OPTIMIZER):
            optimizer = build_optimizer(step.optimizer, params, sharded=_zero1(run), group=zero1_group(run))
            optimizer.step()
            state = optimizer_state(optimizer)
            optimizer.zero_grad(set_to_none=True)
    saved = {name: {"saved": size} for name, size in memory.saved.items()}
    report = session.report((args, kwargs, output), model_name, extra=saved, gradients=gradients, optimizer=state)
    if run.pipeline is not None:
        report = replace(report, total=replace(report.total, output_shape=shapes))
    return run.label(report)


def _pipelined_step(session: Any, run: Run, loss: Callable[..., Any] | None) -> Any:
    """One pipelined step of this rank's stage, as PyTorch's schedule (``--schedule``: GPipe or 1F1B) runs it: the
    forward of each microbatch (received from the stage before, sent to the one after; the loss on the last stage)
    and its backward, in the schedule's order. The phase is the kind of the chunk that runs (the gradients' scaling
    after the last backward chunk is backward work); a send or receive belongs to the kind of chunk it feeds or
    follows, though 1F1B fires a forward send together with a backward receive (``CostMode.p2p_phases``)."""
    stages, p = _stages(run), run.parallel
    tracker, phases = session.tracker, session.mode.p2p_phases

    def loss_fn(output: Any, target: Any) -> Any:
        with session.phase(Phase.FORWARD, LOSS):
            return _loss(loss, output, ())

    chunk, p2p = functools.partial(_chunk_in, tracker), functools.partial(_p2p_in, phases)
    steps = (("forward_one_chunk", chunk(Phase.FORWARD)), ("backward_one_chunk", chunk(Phase.BACKWARD)),
             ("backward_weight_one_chunk", chunk(Phase.BACKWARD)),  # zero bubble: the weights' gradients apart
             ("get_fwd_recv_ops", p2p(Phase.FORWARD)), ("get_fwd_send_ops", p2p(Phase.FORWARD)),
             ("get_bwd_recv_ops", p2p(Phase.BACKWARD)), ("get_bwd_send_ops", p2p(Phase.BACKWARD)))
    step = pipeline_step(run, loss_fn)
    wrapped = [(stage, name, wrap) for stage in stages for name, wrap in steps]
    schedules = _pipelining_schedules()
    if hasattr(schedules, "_batch_p2p"):  # private: where a release lacks it, a kept work holds no output
        wrapped.append((schedules, "_batch_p2p", _works_holding_tensors))
    with session.phase(Phase.FORWARD), run.autocast(), attributes_wrapped(wrapped), \
            torch.autograd.graph.saved_tensors_hooks(session.memory.pack, lambda tensor: tensor):
        try:
            return step()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the pipelined step failed on rank {p.rank} (stage {p.stage}): {one_line(exc)}"
                             ) from exc
        finally:
            phases.clear()


#: ``--schedule`` -> the class of ``torch.distributed.pipelining`` that runs it
_SCHEDULE_CLASSES = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B", "interleaved-1f1b": "ScheduleInterleaved1F1B",
                     "looped-bfs": "ScheduleLoopedBFS", "interleaved-zb": "ScheduleInterleavedZeroBubble",
                     "zbv": "ScheduleZBVZeroBubble", "dualpipev": "ScheduleDualPipeV"}


def pipeline_step(run: Run, loss_fn: Callable[[Any, Any], Any]) -> Callable[[], Any]:
    """One step of this rank's pipeline stages (``run.pipeline``) under PyTorch's schedule (``--schedule``), over
    the job's microbatches: the rank with the first stage is given the inputs, the one with the last computes
    ``loss_fn`` of each microbatch's output (its target unused), a rank between is given nothing; each returns what
    its schedule does. (The count and ``bench`` both run it.)"""
    import torch.distributed.pipelining as pipelining

    from modelprof.workload import MULTI_STAGE

    stages, p = _stages(run), run.parallel
    kind = getattr(pipelining, _SCHEDULE_CLASSES[p.schedule])
    schedule = kind(stages if p.schedule in MULTI_STAGE else stages[0], p.chunks, loss_fn=loss_fn)
    first, last = any(s.is_first for s in stages), any(s.is_last for s in stages)
    target = {"target": torch.zeros(p.chunks), "losses": []} if last else {}  # (a V puts both ends on rank 0)
    if first and len(stages) > 1:  # a multi-stage schedule hands its keyword inputs to every stage: positional
        return lambda: schedule.step(*run.args, *run.kwargs.values(), **target)  # (the trace's order)
    if first:
        return lambda: schedule.step(*run.args, **run.kwargs, **target)
    return lambda: schedule.step(**target)


def _pipelining_schedules() -> Any:
    """``torch.distributed.pipelining.schedules``, whose ``_batch_p2p`` every schedule sends and receives by."""
    from torch.distributed.pipelining import schedules

    return schedules


class _HeldWork:
    """A fake process group's work (which holds nothing) holding the tensors its sends and receives work on, as a
    real backend's work does until it is dropped (gloo's and NCCL's keep them): a schedule that keeps a send's work
    past its microbatch's backward (1F1B keeps the last one until the next send) keeps that output alive, in the
    count as on a real job."""

    def __init__(self, work: Any, tensors: list[torch.Tensor]) -> None:
        self.work, self.tensors = work, tensors

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        return self.work.wait(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.work, name)


def _works_holding_tensors(batch: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """A wrapper for the schedules' ``_batch_p2p``: each work it returns holds its op's tensor (a coalesced work,
    every op's)."""
    def call(ops: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
        works = batch(ops, *args, **kwargs)
        if len(works) == len(ops):
            return [_HeldWork(work, [op.tensor]) for work, op in zip(works, ops, strict=True)]
        return [_HeldWork(work, [op.tensor for op in ops]) for work in works]
    return call


def _stages(run: Run) -> list[Any]:
    """The pipeline stages this rank runs (``run.pipeline``: one stage, or a list of them)."""
    return run.pipeline if isinstance(run.pipeline, list) else [run.pipeline]


def _chunk_in(tracker: Any, phase: Phase) -> Callable[[Any], Any]:
    """A wrapper for a stage's chunk method: the phase is ``phase`` from the chunk on."""
    def wrap(method: Any) -> Any:
        def run_it(*args: Any, **kwargs: Any) -> Any:
            tracker.phase = phase
            return method(*args, **kwargs)
        return run_it
    return wrap


def _p2p_in(phases: dict[int, Phase], phase: Phase) -> Callable[[Any], Any]:
    """A wrapper for a stage's send- or receive-op method: each op's tensor is marked as ``phase``'s."""
    def wrap(method: Any) -> Any:
        def ops(*args: Any, **kwargs: Any) -> Any:
            found = method(*args, **kwargs)
            phases.update((id(op.tensor), phase) for op in found)
            return found
        return ops
    return wrap


@contextlib.contextmanager
def _gradients_followed(model: nn.Module, params: list[nn.Parameter], memory: Any) -> Iterator[None]:
    """While entered, a parameter's gradient counts as gradients in live memory once it is computed and once it is
    accumulated (``MemTracker``'s two hooks), not as a backward temporary; and so does an FSDP2 unit's unsharded
    gradient from its post-backward on (``FSDPMemTracker``'s ``UNSHARDED_GRAD``): the one it reduce-scatters, and
    the one it keeps, in the reduce type, across the microbatches of a pipelined step, which sync gradients only
    at the last. Hooks and wrappers are removed on exit."""
    def computed(grad: torch.Tensor) -> None:
        memory.holds((grad,), GRADIENTS)

    def accumulated(param: torch.Tensor) -> None:
        memory.holds((param.grad,), GRADIENTS)

    handles = []
    try:
        for param in params:
            if not hasattr(param, "_local_tensor"):  # FSDP and DTensor set a sharded parameter's gradient
                handles += [param.register_hook(computed), param.register_post_accumulate_grad_hook(accumulated)]
        with _unsharded_gradients_followed(model, memory):
            yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _unsharded_gradients_followed(model: nn.Module, memory: Any) -> Iterator[None]:
    """Each FSDP2 unit's post-backward wrapped (on the instance, as ``FSDPMemTracker`` does) to mark its unsharded
    gradients as gradients, before it reduce-scatters or keeps them and after it has cast the kept ones."""
    import sys

    if "torch.distributed.fsdp" not in sys.modules:
        return (yield)
    from torch.distributed.fsdp import FSDPModule

    def unsharded(group: Any) -> list[torch.Tensor]:
        return [grad for param in group.fsdp_params
                for grad in (param._unsharded_param.grad if hasattr(param, "_unsharded_param") else None,
                             getattr(param, "unsharded_accumulated_grad", None)) if grad is not None]

    def wrapped(group: Any, post_backward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(post_backward)
        def inner(*args: Any, **kwargs: Any) -> Any:
            memory.holds(unsharded(group), GRADIENTS)
            out = post_backward(*args, **kwargs)
            memory.holds(unsharded(group), GRADIENTS)
            return out
        return inner

    groups = [group for m in model.modules() if isinstance(m, FSDPModule)
              for group in [m._get_fsdp_state()._fsdp_param_group] if group is not None]
    try:
        for group in groups:
            group.post_backward = wrapped(group, group.post_backward)
        yield
    finally:
        for group in groups:
            del group.post_backward  # the class's method again


def _zero1(run: Run) -> bool:
    return run.parallel is not None and run.parallel.data == "zero1"


def zero1_group(run: Run) -> Any:
    """The process group ZeRO-1 shards the optimizer's state over: the data-parallel ranks. Under tensor
    parallelism the ``dp`` dimension of the parameters' device mesh (the ranks holding the same shards); of a
    pipeline stage, the group its ``DistributedDataParallel`` reduces over; else every rank (None)."""
    for param in run.model.parameters():
        mesh = getattr(param, "device_mesh", None)
        if mesh is not None and "dp" in (mesh.mesh_dim_names or ()):
            return mesh.get_group("dp")
    stage = _stages(run)[0] if run.pipeline is not None else None
    return getattr(stage.submod, "process_group", None) if stage is not None else None


@contextlib.contextmanager
def _training_context(model: nn.Module, meta: bool) -> Iterator[None]:
    with training(model), attention_as_on_cpu(meta):
        yield


def resolve_loss(loss: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    """The loss function: a callable as given, or the function ``pkg.mod:fn`` names (a UsageError when that is
    not a function)."""
    if loss is None or callable(loss):
        return loss
    function = resolve(loss, "the loss")
    if not callable(function):
        raise UsageError(f"the loss '{loss}' is a {type(function).__name__}, not a function; name a function "
                         "fn(output, *inputs) -> scalar tensor", option="loss")
    return function


def _loss(loss: Callable[..., Any] | None, output: Any, args: tuple) -> Any:
    try:
        return (loss or default_loss)(output, *args)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the loss failed: {type(exc).__name__}: {one_line(exc)}") from exc


def _backward(value: Any) -> None:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ModelError(f"the loss must be a scalar tensor, got {type(value).__name__}"
                         + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))
    try:
        value.backward()
    except Exception as exc:
        raise ModelError(f"the backward pass failed: {type(exc).__name__}: {one_line(exc)}") from exc
