"""``--gpus N --fsdp | --zero 2 | --ddp [--tp T]``: the step as one rank of a job, sharded by PyTorch itself.

The model is sharded with PyTorch's own engine on a process group of the ``fake`` backend (``gpus`` ranks simulated
in this one process, whose collectives complete at once and move no data), as torchtitan's ``parallelize`` does it:
first tensor parallelism, DTensor's ``parallelize_module`` with the model's own plan (a transformers config's
``base_model_tp_plan``, with the model's ``_tp_plan`` for its head) or the one given, over the ``tp`` dimension of
a (data, tensor) device mesh; then data parallelism over the other dimension, FSDP2's ``fully_shard`` (one unit
per repeated block, then the root) or the composable DDP ``replicate``. So the run is rank ``rank``'s step exactly as
PyTorch would run it in a real job: its shards, the all-gathered parameters in flight, the gradients reduced and
scattered; the counting session sees every op and every collective. Nothing about the model is changed that is not
put back: a model modelprof did not build itself is copied first (sharding rewrites a model in place).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import functools
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from modelprof.errors import UsageError
from modelprof.prepare.amp import amp_dtype
from modelprof.prepare.base import Run, Transform, on_fake_cpu
from modelprof.prepare.checkpoint import checkpointed_forwards
from modelprof.prepare.pipeline import pipelined

if TYPE_CHECKING:
    from modelprof.workload import Parallel, Workload


class Shard(Transform):
    """One rank of a data-parallel job: FSDP2 (ZeRO-3), FSDP2 without resharding after the forward (ZeRO-2), or
    DDP, on a fake process group of ``gpus`` ranks."""

    option = "--gpus/--tp/--fsdp/--zero/--ddp"

    def wanted(self, workload: Workload) -> bool:
        return workload.parallel.sharded

    def refusal(self, workload: Workload) -> str | None:
        p = workload.parallel
        if p.gpus < 1 or p.tp < 1 or p.pp < 1 or p.microbatches < 0:
            return "--gpus, --tp, --pp and --microbatches: a job has at least one rank, a stage, a microbatch"
        if not 0 <= p.rank < p.gpus:
            return f"--rank {p.rank} is not a rank of a {p.gpus}-rank job (0 to {p.gpus - 1})"
        if p.sharded and workload.generation is not None:
            return ("--gpus/--tp/--pp/--fsdp/--zero/--ddp shard a forward or a training step, not a generation; "
                    "drop --generate")
        if p.sequence_parallel and p.tp == 1:
            return "--sp splits the activations between tensor-parallel layers; it needs --tp N (N > 1)"
        return _pipeline_refusal(workload) if p.pp > 1 else _layout_refusal(workload)

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        import torch.distributed as dist

        p = workload.parallel
        started = not dist.is_initialized()
        if started:
            from torch.testing._internal.distributed.fake_pg import FakeStore

            dist.init_process_group("fake", store=FakeStore(), rank=p.rank, world_size=p.gpus)
        elif dist.get_world_size() != p.gpus or dist.get_rank() != p.rank:
            raise UsageError(f"a process group of {dist.get_world_size()} ranks is running here already; "
                             f"--gpus {p.gpus} --rank {p.rank} needs its own")
        try:
            # on meta: a copy is cheap, and FSDP and DTensor shard fake CPU tensors in its place (no storage); the
            # mesh and the sharding are made outside the fake mode (a device mesh computes its coordinates from
            # real tensors), the step runs inside it
            model = run.model if run.owned else copy.deepcopy(run.model)
            if p.pp > 1:
                with _staged(replace(run, model=model), workload) as staged:
                    yield staged
                return
            with on_fake_cpu(replace(run, model=model)) as sharded:
                device = "cpu" if sharded.fake_mode is not None else run.device
                mixed = _mixed_precision(workload, device)
                shard(model, p, device, mixed, _mesh(device, p), fake_mode=sharded.fake_mode)
                with sharded.fake_mode or contextlib.nullcontext():
                    yield replace(sharded, parallel=p, mixed_precision=mixed)
        finally:
            if started:
                dist.destroy_process_group()
                _forget_meshes()


@contextlib.contextmanager
def _staged(run: Run, workload: Workload) -> Iterator[Run]:
    """This rank's pipeline stages (:func:`~modelprof.prepare.pipeline.pipelined`; on meta traced and run on fake
    CPU tensors: export bakes its factories' device in), their blocks checkpointed and then sharded over the
    stage's data-parallel ranks, torchtitan's order."""
    p = workload.parallel
    with on_fake_cpu(run) as faked:
        device = "cpu" if faked.fake_mode is not None else run.device
        mesh = _mesh(device, p)
        mixed = _mixed_precision(workload, device)
        # without FSDP's policy, --amp is the autocast transform's, applied later: the model is traced under it
        autocast = amp_dtype(device) if workload.precision.amp and mixed is None else None
        staged, blocks, recomputed = pipelined(faked, p, mesh["pp"].get_group(), mixed, autocast,
                                               workload.checkpoint.modules,
                                               mesh["tp"] if p.sequence_parallel else None)
        with checkpointed_forwards(recomputed):
            for submod in _stage_modules(staged) if p.data not in (None, "zero1") or p.tp > 1 else ():
                inside = {id(m) for m in submod.modules()}
                shard(submod, p, device, mixed, mesh, [b for b in blocks if id(b) in inside])
            held = staged.pipeline if isinstance(staged.pipeline, list) else [staged.pipeline]
            for stage in held if p.data == "zero1" and p.tp == 1 else ():
                with faked.fake_mode or contextlib.nullcontext():  # (DDP's buckets: fake on meta, as the grads)
                    _in_ddp(stage, mesh["dp"].get_group())
            with faked.fake_mode or contextlib.nullcontext():
                yield replace(staged, mixed_precision=mixed)


def _in_ddp(stage, group) -> None:  # noqa: ANN001
    """ZeRO-1 of a pipeline stage (``--pp --zero 1``, DeepSpeed's pipeline with ZeRO-1): its module in PyTorch's
    ``DistributedDataParallel`` over the stage's data-parallel ``group``, which ``PipelineStage`` knows (it reduces
    the gradients once, in the last microbatch's backward); the optimizer's state is then sharded over the same
    group (``counting/train.py``). The report's rows stay the module's own."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    fake = dist.get_backend(group) == "fake"
    # on a fake group DDP's set-up checks and broadcasts nothing (they come before the step; on meta the stage's
    # fake tensors hold no data to check); a real job (bench --gpus) runs them and keeps DDP's asynchronous hook
    ddp = DistributedDataParallel(stage.submod, process_group=group, init_sync=not fake)
    if fake:
        ddp.register_comm_hook(group, _all_reduce_now)
    stage.submod = ddp


def _forget_meshes() -> None:
    """Clear DTensor's caches of sharding and redistribution plans once a job's process group is gone: they hold
    its device meshes, and a mesh of another rank's job in this process compares equal to one of them (a sub-mesh
    is equal by its layout in the whole mesh, whatever rank looks at it), so the next job would find plans whose
    collectives name groups that no longer exist. A real job never sees this: its process is one rank. Private
    functions: where a release lacks one, the next job counted in this process may fail, and a new process works."""
    with contextlib.suppress(ImportError, AttributeError):
        from torch.distributed.tensor import _redistribute
        from torch.distributed.tensor.debug import _clear_sharding_prop_cache

        _clear_sharding_prop_cache()
        _redistribute.clear_redistribute_planner_cache()
        _redistribute._gen_transform_infos.cache_clear()


def _stage_modules(run: Run) -> list:
    """The modules of the pipeline stages a rank runs: each is sharded on its own, as torchtitan shards a rank's
    model chunks."""
    return list(run.model.values()) if isinstance(run.pipeline, list) else [run.model]


def _mesh(device: str, p: Parallel):  # noqa: ANN202
    """The job's device mesh: (pp, dp, tp), the stages outermost, as torchtitan lays it out (made outside any fake
    mode: a mesh computes its coordinates from real tensors)."""
    from torch.distributed.device_mesh import init_device_mesh

    if p.pp > 1:
        return init_device_mesh(device, (p.pp, p.dp, p.tp), mesh_dim_names=("pp", "dp", "tp"))
    return init_device_mesh(device, (p.dp, p.tp), mesh_dim_names=("dp", "tp"))


def _mixed_precision(workload: Workload, device: str):  # noqa: ANN202
    """The 16-bit type FSDP gathers parameters in (``--amp`` with FSDP or ZeRO-2), or None."""
    p = workload.parallel
    return amp_dtype(device) if workload.precision.amp and p.data is not None and not p.data.replicated else None


def _layout_refusal(workload: Workload) -> str | None:
    """What a data- and tensor-parallel layout cannot do, or None."""
    from modelprof.workload import OWN_STYLES, TP_STYLES

    p = workload.parallel
    if p.microbatches or p.schedule != "gpipe" or p.stages_per_rank:
        option = "microbatches" if p.microbatches else "schedule" if p.schedule != "gpipe" else "stages-per-rank"
        return f"--{option} is for a pipelined step; it needs --pp N (N > 1)"
    if p.gpus % p.tp:
        return (f"--gpus {p.gpus} is not a multiple of --tp {p.tp}: the job is groups of {p.tp} "
                "tensor-parallel ranks")
    if p.dp > 1 and p.data is None:
        groups = f" ({p.dp} data-parallel groups of --tp {p.tp})" if p.tp > 1 else ""
        return f"--gpus {p.gpus} runs one rank of a job{groups}; say how it shards: --fsdp, --zero 2 or --ddp"
    bad = sorted({style for _, style in p.tp_plan if style not in TP_STYLES + OWN_STYLES})
    if bad:
        return f"--tp-plan: unknown style {', '.join(bad)}; the styles are {', '.join(TP_STYLES + OWN_STYLES)}"
    if p.tp_plan and p.tp == 1:
        return "--tp-plan needs --tp N (N > 1)"
    if p.data is not None and p.data.value != "fsdp" and workload.training is None:
        names = {"ddp": "--ddp", "zero2": "--zero 2", "zero1": "--zero 1"}
        return f"{names[p.data.value]} shards a training step; add --train"
    return None


def _pipeline_refusal(workload: Workload) -> str | None:
    """What a pipelined step (``--pp``) cannot do yet, or None."""
    p = workload.parallel
    if p.gpus % (p.pp * p.tp):
        return f"--gpus {p.gpus} is not a multiple of --tp × --pp ({p.tp} × {p.pp})"
    if p.dp > 1 and p.data is None:
        return (f"--gpus {p.gpus} runs {p.dp} data-parallel ranks of each of the {p.pp} stages; say how they shard: "
                "--fsdp, --zero 2 or --ddp")
    if workload.training is None:
        return "--pp runs a pipelined training step (PyTorch's pipeline schedules); add --train"
    return _schedule_refusal(p)


def _schedule_refusal(p: Parallel) -> str | None:
    """What ``--schedule``, ``--stages-per-rank`` and ``--microbatches`` cannot go together with, or None."""
    from modelprof.workload import MULTI_STAGE, V_SHAPED

    if p.virtual > 1 and p.schedule not in MULTI_STAGE:
        return (f"--stages-per-rank is for --schedule {', '.join(MULTI_STAGE)} (GPipe and 1F1B run one stage a "
                "rank)")
    if p.schedule in V_SHAPED and p.virtual != 2:
        return f"--schedule {p.schedule} runs two stages a rank, in a V; drop --stages-per-rank {p.virtual}"
    stages = p.pp * p.virtual
    if p.schedule in ("1f1b", "dualpipev") and p.chunks < stages:
        return (f"--schedule {p.schedule} needs at least as many microbatches as stages: --microbatches {stages} or "
                f"more (given {p.chunks})")
    rounds = max(1, p.chunks // p.pp)  # PyTorch's multi-stage schedules run the microbatches in rounds
    if p.schedule in MULTI_STAGE and p.chunks % rounds:
        return (f"--schedule {p.schedule} runs the microbatches in rounds of --pp ({p.pp}): --microbatches "
                f"{p.chunks} is not a whole number of rounds; use a multiple of {p.pp} (or fewer than {p.pp})")
    return None


def _all_reduce_now(state, bucket):  # noqa: ANN001, ANN202  (DDP refuses a hook whose annotations are strings)
    """DDP's default communication hook (divide by the group's size, all-reduce the bucket, a ``dist.GradBucket``,
    over the process group ``state``: None for every rank), waited for at once: a fake process group's work
    carries no result for DDP's asynchronous hook to hand back."""
    import torch
    import torch.distributed as dist

    tensor = bucket.buffer()
    tensor.div_(dist.get_world_size(state))
    dist.all_reduce(tensor, group=state)
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(tensor)
    return future


def shard(model, p: Parallel, device: str, mixed_precision=None, mesh=None, blocks=None,  # noqa: ANN001
          fake_mode=None) -> None:  # noqa: ANN001
    """Shard ``model`` in place as rank ``p.rank`` of the job ``p``: tensor parallelism over the mesh's ``tp``
    dimension first, then ``ddp`` replicates it, or ``fsdp``/``zero2`` put each repeated block (the class with
    children that has the most instances, as ``--checkpoint auto`` finds it) in an FSDP2 unit of its own, then the
    root, over the ``dp`` dimension. With ``mixed_precision`` (a 16-bit dtype: ``--amp``) the FSDP units gather
    their parameters in that type and reduce the gradients in float32 (``MixedPrecisionPolicy``), as torchtitan
    trains with FSDP, instead of autocast: autocast would cache a 16-bit copy of every block's gathered weights
    until the forward ends. ``mesh`` is the job's (:func:`_mesh`); ``blocks`` the FSDP units when given (a
    pipeline stage's blocks: every module of a traced stage is of one class); ``fake_mode`` the fake tensors' mode
    on meta, in which DDP makes its buckets."""
    from modelprof.counting.formulas import register_distributed_formulas

    register_distributed_formulas()
    mesh = mesh if mesh is not None else _mesh(device, p)
    if p.tp > 1:
        from torch.distributed.tensor.parallel import parallelize_module

        parallelize_module(model, mesh["tp"], tp_styles(model, p, stage=p.pp > 1))
        _warm_dtensor(device)
    if p.data is None:
        return
    if p.data.replicated and (p.pp > 1 or p.tp > 1):
        # a pipeline stage, or DTensor's shards: FSDP2's replicate (each unit's gradients all-reduced over the
        # data-parallel ranks), which PyTorch's stages know and which takes DTensor parameters, as DDP does not
        from torch.distributed._composable.replicate_with_fsdp import replicate

        for module in [*(_blocks(model) if blocks is None else blocks), model]:
            replicate(module, mesh=mesh["dp"])
        return
    if p.data.replicated:  # DDP, and ZeRO-1 (DDP with a sharded optimizer: counting/train.py)
        import torch.distributed as dist
        from torch.distributed._composable.replicate import replicate

        fake = dist.get_backend() == "fake"
        # on a fake group DDP's set-up checks and broadcasts nothing (on meta the fake tensors hold no data to
        # check); a real job (bench --gpus) runs them and keeps DDP's own asynchronous hook
        replicate(model, init_sync=not fake)
        if fake:
            model.register_comm_hook(None, _all_reduce_now)
        # DDP's set-up (its gradient buckets; fake ones on meta, as the gradients) runs at the first forward; run it
        # now, so the counted step has only what every step has
        with fake_mode or contextlib.nullcontext():
            replicate.state(model).lazy_init()
        return
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    reshard = p.data == "fsdp"
    policy = (MixedPrecisionPolicy(param_dtype=mixed_precision, reduce_dtype=torch.float32)
              if mixed_precision is not None else MixedPrecisionPolicy())
    for block in _blocks(model) if blocks is None else blocks:
        fully_shard(block, mesh=mesh["dp"], reshard_after_forward=reshard, mp_policy=policy)
    fully_shard(model, mesh=mesh["dp"], reshard_after_forward=reshard, mp_policy=policy)


def _blocks(model) -> list:  # noqa: ANN001
    """The model's repeated blocks (as ``--checkpoint auto`` finds them), each a unit of its own; none when it has
    no repeated block (the model is one unit)."""
    from modelprof.prepare.checkpoint import AUTO, checkpointed_modules

    try:
        return checkpointed_modules(model, (AUTO,))
    except UsageError:
        return []


def held_parameters(model) -> tuple[int, int]:  # noqa: ANN001
    """The parameter elements this rank holds (its local shards, FSDP's padding included) of the weights the TP
    plan shards (sharded on the mesh's ``tp`` dimension), and of the rest."""
    sharded = whole = 0
    for param in model.parameters():
        local = getattr(param, "_local_tensor", param)
        mesh, placements = getattr(param, "device_mesh", None), getattr(param, "placements", ())
        names = (mesh.mesh_dim_names or ()) if mesh is not None else ()
        # a Shard, or transformers' packed weights' _StridedShard (which is no Shard)
        if any(name == "tp" and not (placement.is_replicate() or placement.is_partial())
               for name, placement in zip(names, placements, strict=False)):
            sharded += local.numel()
        else:
            whole += local.numel()
    return sharded, whole


def _warm_dtensor(device: str) -> None:
    """Make now what DTensor makes at its first decomposed op: a one-rank mesh for working out layouts, whose
    coordinates it computes with two small tensor ops (``(mesh == rank).nonzero()``), bookkeeping the count would
    charge to a layer. A private attribute: where a release lacks it, those two ops are counted, and nothing else
    changes."""
    from torch.distributed.tensor import DTensor

    with contextlib.suppress(AttributeError):
        DTensor._op_dispatcher.sharding_propagator.decomp_strategy._get_fake_mesh(device)


def own_tp_plan(model) -> dict[str, str]:
    """The model's own tensor-parallel plan, module-name pattern -> style: a transformers model holds it whole in
    ``_tp_plan`` (its config's ``base_model_tp_plan`` under the base model's name, its head's, and the input
    embeddings'); a model that only has the config's is given that, under the base model's name."""
    plan = getattr(model, "_tp_plan", None)
    if isinstance(plan, dict) and plan:
        return dict(plan)
    base = getattr(model, "base_model", None)
    base_plan = getattr(getattr(model, "config", None), "base_model_tp_plan", None) or {}
    prefix = next((name for name, m in model.named_modules() if m is base), "") if base is not None else ""
    return {f"{prefix}.{k}" if prefix else k: v for k, v in base_plan.items()}


def _matches(name: str, pattern: str) -> bool:
    """``parallelize_module``'s matching: the same number of dotted parts, each an ``fnmatch`` pattern."""
    parts, atoms = name.split("."), pattern.split(".")
    return len(parts) == len(atoms) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, atoms, strict=True))


def _check_shardable(name: str, module, rowwise: bool, tp: int) -> None:  # noqa: ANN001
    """A UsageError unless ``module`` is a linear layer or an embedding whose sharded dimension ``tp`` divides."""
    from torch import nn

    if not isinstance(module, nn.Linear | nn.Embedding):
        raise UsageError(f"--tp: {name} is a {type(module).__name__}; a plan shards nn.Linear and nn.Embedding "
                         "layers")
    dim = 0 if isinstance(module, nn.Embedding) or not rowwise else 1  # nn.Linear's weight: (out, in)
    if module.weight.shape[dim] % tp:
        raise UsageError(f"--tp {tp} does not divide the {module.weight.shape[dim]} {'inputs' if dim else 'rows'} "
                         f"of {name}'s weight; use a --tp that divides it")


def tp_styles(model, p: Parallel, stage: bool = False) -> dict:
    """The plan as torch's ``ParallelStyle`` per module pattern, checked against the model: every pattern names
    modules (or parameters) whose sharded dimension ``tp`` divides, and ``tp`` divides the attention heads. Of a
    pipeline ``stage``, the patterns naming none of its modules (another stage's) are left out.

    ``colwise`` shards a weight's outputs (``ColwiseParallel``: input replicated, output sharded on its last
    dimension); ``rowwise`` its inputs (``RowwiseParallel``: the partial outputs all-reduced), or an embedding's
    vocabulary (transformers' ``embedding_rowwise``); ``colwise_rep``/``colwise_gather_output`` gather the output
    whole (a language model's head); ``rowwise_split_input``/``rowwise_rep`` split an input that comes whole. The
    styles DTensor has no class for (:data:`~modelprof.workload.OWN_STYLES`: a mixture's packed experts, a per-head
    norm whose gradient is all-reduced, a shared expert's partial sums all-reduced, an embedding split along its
    width), and a style naming a parameter, are transformers' own classes, the ones ``from_pretrained(tp_plan=...)``
    applies (:func:`_own_styles`)."""
    from modelprof.workload import OWN_STYLES, TP_STYLES

    plan = dict(p.tp_plan) or own_tp_plan(model)
    if not plan:
        raise UsageError(f"--tp: {type(model).__name__} has no tensor-parallel plan of its own (a transformers "
                         "config's base_model_tp_plan); give one with --tp-plan FILE (JSON: module-name pattern -> "
                         "colwise | rowwise)")
    config = getattr(model, "config", None)
    for key in ("num_attention_heads", "num_key_value_heads"):
        heads = getattr(config, key, None)
        if isinstance(heads, int) and heads % p.tp:
            raise UsageError(f"--tp {p.tp} does not divide the model's {heads} {key.replace('_', ' ')}; "
                             "use a --tp that divides it")
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    styles: dict = {}
    for pattern, style in plan.items():
        if style not in TP_STYLES + OWN_STYLES:  # the model's own plan (a given one was checked with the workload)
            raise UsageError(f"--tp: the plan's style {style!r} for {pattern} is not built; the styles are "
                             f"{', '.join(TP_STYLES + OWN_STYLES)}: give a plan in them with --tp-plan FILE")
        named = [(name, m) for name, m in modules.items() if _matches(name, pattern)]
        held = [(name, t) for name, t in parameters.items() if _matches(name, pattern)]
        if not named and not held and (stage or not p.tp_plan):  # another stage's, or a variant's the model lacks
            continue
        if not named and not held:
            raise UsageError(f"--tp-plan: {pattern!r} names no module of the model")
        # an embedding with a module inside (Inkling's normed one): DTensor's style would shard that one's weight too
        nested = style == "embedding_rowwise" and any(any(m.children()) for _, m in named)
        if held or style in OWN_STYLES or nested:
            _add_own_style(styles, pattern, style, held, p.tp, config)
        else:
            styles[pattern] = _torch_style(named, style, p.tp)
    if not styles:
        raise UsageError(f"--tp: the plan names none of {type(model).__name__}'s modules; give one that does with "
                         "--tp-plan FILE")
    return _sequence_parallel(model, plan, stage) if p.sequence_parallel else styles


#: ``--sp``: the plan's styles it is built for (DTensor's own: a decoder's column- and row-wise layers, its
#: vocabulary-split embeddings and its gathered head)
SP_STYLES = ("colwise", "rowwise", "embedding_rowwise", "colwise_rep", "colwise_gather_output")


def _sequence_parallel(model, plan: dict[str, str], stage: bool = False) -> dict:  # noqa: ANN001
    """The ``plan`` made sequence-parallel, as torchtitan's Llama plan is: the residual stream between the sharded
    layers is a DTensor split along the sequence (dimension 1) over the TP ranks. The row-wise layers (and the
    vocabulary-split embeddings) reduce-scatter their partial sums into it instead of all-reducing them; each module
    holding column-wise layers (an attention, an MLP) all-gathers its input first (:func:`_gather_sequence`); the
    gathered head takes it split; the norms on the stream (:func:`_stream_norms`) work on their slice (DTensor's
    ``SequenceParallel``). The stream stays a DTensor, so the model's own code sees its whole shape (the positions
    and the mask a decoder makes from its embeddings). The plan was checked against the model (:func:`tp_styles`).
    A pipeline ``stage`` but the last has no head: it sends its slice of the stream (``layer_stages.py``)."""
    from torch import nn
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel

    odd = sorted({style for style in plan.values() if style not in SP_STYLES})
    if odd:
        raise UsageError(f"--sp is built for plans in {', '.join(SP_STYLES)}; {type(model).__name__}'s has "
                         f"{', '.join(odd)}: drop --sp")
    modules = dict(model.named_modules())
    kinds = {name: style for name in modules for pattern, style in plan.items() if _matches(name, pattern)}
    if not stage and not any(style in ("colwise_rep", "colwise_gather_output") for style in kinds.values()):
        raise UsageError("--sp needs a plan whose last layer gathers its output whole (colwise_rep: a language "
                         "model's head), so that the model's output is whole; drop --sp")
    gathering = sorted({name.rpartition(".")[0] for name, style in kinds.items() if style == "colwise"})
    if "" in gathering:
        raise UsageError("--sp: a column-wise layer of the plan sits directly in the model; its input cannot be "
                         "gathered from the sequence's slices before it; drop --sp")
    split = {}
    for name, style in kinds.items():
        if isinstance(modules[name], nn.Embedding) or style == "embedding_rowwise":
            split[name] = RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1), use_local_output=False)
        elif style == "rowwise":
            split[name] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
        else:
            split[name] = ColwiseParallel() if style == "colwise" else ColwiseParallel(input_layouts=Shard(1),
                                                                                         output_layouts=Replicate())
    split.update(dict.fromkeys(_stream_norms(modules, kinds, gathering), SequenceParallel()))
    return {**split, **dict.fromkeys(gathering, _gather_sequence())}


def _stream_norms(modules: dict, kinds: dict[str, str], gathering: list[str]) -> list[str]:
    """The norms on a sequence-parallel residual stream: the leaf modules holding parameters that the plan leaves
    whole, outside the modules that gather their input; a UsageError for such a module that is no norm (one that
    cannot work on a slice of the sequence)."""
    inside = tuple(f"{name}." for name in gathering)
    norms = []
    for name, module in modules.items():
        if (name in kinds or name.startswith(inside) or next(module.children(), None) is not None
                or next(module.parameters(recurse=False), None) is None):
            continue
        if "norm" not in type(module).__name__.lower():
            raise UsageError(f"--sp: {name} ({type(module).__name__}) holds parameters the plan leaves whole "
                             "outside the attention and the MLP, and is no norm that can work on a slice of the "
                             "sequence; drop --sp")
        norms.append(name)
    return norms


def _torch_style(named: list, style: str, tp: int):  # noqa: ANN202
    """DTensor's style for the modules ``named`` (name, module) of one plan entry, checked shardable."""
    from torch import nn
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    rowwise = style in ("rowwise", "embedding_rowwise", "rowwise_split_input", "rowwise_rep")
    for name, module in named:
        _check_shardable(name, module, rowwise, tp)
    whole_input = all(isinstance(m, nn.Embedding) for _, m in named) or style in ("rowwise_split_input", "rowwise_rep")
    return (RowwiseParallel(input_layouts=Replicate()) if rowwise and whole_input
            else RowwiseParallel() if rowwise
            else ColwiseParallel() if style == "colwise"
            else ColwiseParallel(output_layouts=Replicate()))


def _add_own_style(styles: dict, pattern: str, style: str, held: list, tp: int, config=None) -> None:  # noqa: ANN001
    """One plan entry in transformers' own styles (:func:`_own_styles`), kept under its module's pattern: a style
    for the parameters ``held`` (name, parameter) that ``pattern`` names, or for the modules it names. ``config``
    is the model's (multi-head latent attention's style reads its rotary width from it)."""
    if style not in _transformers_styles():
        raise UsageError(f"--tp: the installed transformers has no style {style!r} (for {pattern}); upgrade it, or "
                         "give a plan in colwise | rowwise with --tp-plan FILE")
    owner = pattern.rpartition(".")[0] if held else pattern
    own = styles.setdefault(owner, _own_styles()())
    if not isinstance(own, _own_styles()):
        raise UsageError(f"--tp-plan: {owner!r} has a style of its own and one for its parameters")
    own.add(pattern.rpartition(".")[2] if held else None, style)
    own.config = getattr(config, "get_text_config", lambda: config)()
    for name, param in held:
        _check_divides(name, param, style, tp)


def _check_divides(name: str, param, style: str, tp: int) -> None:  # noqa: ANN001
    """A UsageError unless ``tp`` divides the dimension transformers' ``style`` shards of the parameter ``name``
    (a packed weight's halves each: ``2 × tp``); a bias a row-wise style leaves whole is not checked."""
    if param.ndim == 1 and style in ("rowwise", "packed_rowwise") or style.startswith("embedding"):
        return  # (transformers' embeddings take a dimension the ranks split unevenly)
    dim = -1 if param.ndim == 1 or style in ("rowwise", "packed_rowwise") else param.ndim - 2
    parts = tp * (2 if style.startswith("packed") else 1)
    if param.shape[dim] % parts:
        raise UsageError(f"--tp {tp} does not divide {name}'s {param.shape[dim]} {'inputs' if dim == -1 else 'rows'}"
                         f"{' (two halves packed)' if parts > tp else ''}; use a --tp that divides it")


@functools.cache
def _gather_sequence():  # noqa: ANN202
    """A ``ParallelStyle`` that all-gathers every DTensor argument of a module's forward whole and hands it on as a
    plain tensor (``--sp``: an attention's or an MLP's input, split along the sequence), as DTensor's
    ``PrepareModuleInput`` does for the arguments it is told of; whatever the module's signature (a transformers
    attention takes its hidden states by keyword, an MLP by position)."""
    from torch.distributed.tensor import DTensor, Replicate
    from torch.distributed.tensor.parallel import ParallelStyle

    class GatherSequence(ParallelStyle):
        def _apply(self, module, device_mesh):  # noqa: ANN001, ANN202
            def whole(value):  # noqa: ANN001, ANN202
                if isinstance(value, DTensor):
                    return value.redistribute(device_mesh, [Replicate()]).to_local()
                return value

            def gather(_module, args, kwargs):  # noqa: ANN001, ANN202
                return tuple(whole(a) for a in args), {k: whole(v) for k, v in kwargs.items()}

            module.register_forward_pre_hook(gather, with_kwargs=True)
            return module

    return GatherSequence()


def _takes_config(method) -> bool:  # noqa: ANN001
    """Whether transformers' style ``method`` takes the model's config as a keyword (transformers 5.25 on)."""
    import inspect

    return "config" in inspect.signature(method).parameters


def _transformers_styles():  # noqa: ANN202
    """transformers' registry of its tensor-parallel styles, its DTensor classes by name; a UsageError naming the
    way out where transformers (or a release with them, ``transformers.distributed``) is not installed."""
    try:
        from transformers.distributed.tensor_parallel import ALL_PARALLEL_STYLES
    except ImportError as err:
        raise UsageError("--tp: a plan's packed, mixture-of-experts and gradient-all-reduced styles are "
                         "transformers' own classes (transformers.distributed.tensor_parallel), which are not "
                         "installed: pip install -U transformers, or give a plan in colwise | rowwise with --tp-plan "
                         "FILE") from err
    return ALL_PARALLEL_STYLES


@functools.cache
def _own_styles() -> type:
    """transformers' own tensor-parallel classes for one module (``transformers.distributed.tensor_parallel``), as
    its ``apply_tensor_parallelism`` applies a model's plan: each named parameter wrapped as the DTensor shard its
    style makes, then the module's forward wrapped by the module's style; a ``ParallelStyle`` for DTensor's
    ``parallelize_module``, which matches the modules."""
    from torch.distributed.tensor.parallel import ParallelStyle

    class OwnStyles(ParallelStyle):
        def __init__(self) -> None:
            self.entries: list[tuple[str | None, str]] = []
            self.config = None

        def add(self, param: str | None, style: str) -> None:
            """One plan entry: a style for the parameter ``param`` of the module, or for the module (``None``)."""
            self.entries.append((param, style))

        def _apply(self, module, device_mesh):  # noqa: ANN001, ANN202
            registry = _transformers_styles()
            named = {param for param, _ in self.entries}
            for param, style in sorted(self.entries, key=lambda entry: entry[0] is None):  # parameters first
                # the model's text config, as apply_tensor_parallelism hands it (transformers 5.25 on: a keyword)
                given = {"config": self.config} if _takes_config(registry[style].install_forward) else {}
                if param is not None:
                    registry[style].shard_param(module, param, device_mesh, **given)
                    continue
                # the module's own parameters without an entry take its style, as _expand_parallel_plan gives them
                for own in [k for k, v in module._parameters.items() if v is not None and k not in named]:
                    registry[style].shard_param(module, own, device_mesh, **given)
                if style == "mla_kv_a_proj" and not given:  # (before 5.25: the rotary width read off the module)
                    module.config = self.config
                registry[style].install_forward(module, device_mesh, **given)
            return module

    return OwnStyles
