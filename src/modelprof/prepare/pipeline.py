"""``--pp N``: the model cut into pipeline stages by PyTorch's own pipelining, and this rank's stage built.

The model is traced (``torch.distributed.pipelining.pipeline``, torch.export) at one microbatch and split before
evenly spaced repeated blocks. A value a stage makes from no input and no trainable weight (a rotary embedding's
tables, a causal mask: functions of the sequence's shape and of buffers) is then made again by each later stage
that uses it, as torchtitan's stages do, instead of being sent: PyTorch's traced stages would send it, and refuse
the backward of one sent past the next stage ("skip connections"), which is every decoder cut into more than two.
With ``--tp`` a decoder is cut by its layers instead (``layer_stages.py``). Torch is imported inside the functions
(the command line checks a workload without it).
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modelprof.errors import ModelError, UsageError, one_line
from modelprof.prepare.base import Run
from modelprof.prepare.layer_stages import layer_stages

if TYPE_CHECKING:
    from modelprof.workload import Parallel


def pipelined(run: Run, p: Parallel, group: Any = None, param_dtype: Any = None, autocast: Any = None,
              checkpoint: tuple[str, ...] = (), sequence_mesh: Any = None) -> tuple[Run, list[Any], list[Any]]:
    """Rank ``p.rank``'s stage (``p.stage``) of the model cut into ``p.pp`` stages, sending to its neighbours over
    ``group`` (the world when None), the repeated blocks it holds, and its modules of the classes ``checkpoint``
    names (``--checkpoint``: a traced stage's modules are all of one class, so they are found by the model's
    names before the cut, to be checkpointed after it, as torchtitan does). The stage keeps the model's names;
    its inputs are the data on the first stage only (the others receive activations). ``param_dtype`` is the type
    FSDP's mixed-precision policy will gather the parameters in (``--amp``): the model is traced as it will run,
    parameters and floating inputs in that type (torch.export bakes the dtypes it saw into checks), and the stage
    keeps its parameters in their own. ``autocast`` is the type the step's autocast runs in (``--amp`` without
    FSDP): a model whose weights are not float32 is traced under it (traced without it, its dtype checks fail under
    autocast), which makes its weights' casts ops of each microbatch's forward, where eager autocast casts each
    weight once a step; a float32 model is traced as it is, and autocast casts at run time. With ``--tp`` the model
    is not traced but cut by its layers into eager stages (:mod:`~modelprof.prepare.layer_stages`), whose
    ``nn.Linear`` layers the TP plan can shard; so it is for a V-shaped schedule, whose two stages on a rank pass
    their values to each other directly (traced stages send them through the process group, which a real gloo job
    refuses). ``sequence_mesh`` (``--sp``: the TP ranks' mesh) makes the stages send their slice of the sequence."""
    import torch
    from torch.utils._pytree import tree_leaves, tree_map_only

    from modelprof.prepare.checkpoint import AUTO, checkpointed_modules
    from modelprof.workload import V_SHAPED

    model = run.model
    try:
        blocks = checkpointed_modules(model, (AUTO,))
    except UsageError:
        raise UsageError("--pp cuts the model between repeated blocks, and it has none") from None
    stages = p.pp * p.virtual
    if stages > len(blocks):
        asked = f"--pp {p.pp}" + (f" × --stages-per-rank {p.virtual}" if p.virtual > 1 else "")
        raise UsageError(f"{asked} is more stages than the model's {len(blocks)} {type(blocks[0]).__name__} blocks; "
                         "a stage holds at least one")
    names = {id(module): name for name, module in model.named_modules()}
    recomputed = {names[id(m)] for m in checkpointed_modules(model, checkpoint)} if checkpoint else set()
    bounds = [round(i * len(blocks) / stages) for i in range(stages)] + [len(blocks)]
    inputs = [t for t in tree_leaves((run.args, run.kwargs)) if isinstance(t, torch.Tensor) and t.dim()]
    batch = len(inputs[0]) if inputs else 0
    if not batch or batch % p.chunks:
        raise UsageError(f"--microbatches {p.chunks}: the batch ({batch}) is not a multiple of it; give --batch N "
                         "with N a multiple")

    def microbatch(tensor):
        return tensor[: batch // p.chunks] if tensor.dim() and len(tensor) == batch else tensor

    def as_run(tensor):  # FSDP's cast_forward_inputs
        return tensor.to(param_dtype) if param_dtype is not None and tensor.is_floating_point() else tensor

    mb_args, mb_kwargs = tree_map_only(torch.Tensor, lambda t: as_run(microbatch(t)), (run.args, run.kwargs))
    # on meta the stage runs on fake CPU tensors (Shard.apply swaps them in): a process group sends none of meta's
    device = torch.device("cpu" if run.device == "meta" else run.device)
    # tensor parallelism shards nn.Linear layers, which only an eager stage keeps; and a V puts two neighbouring
    # stages on one rank, which only eager stages pass values between without the process group
    if p.tp > 1 or p.schedule in V_SHAPED or p.data == "zero1":
        if len(inputs) != 1:
            asked = "--tp" if p.tp > 1 else "--zero 1" if p.data == "zero1" else f"--schedule {p.schedule}"
            raise UsageError(f"{asked} cuts the model by its layers and gives the first stage one input, the token "
                             f"ids; the model is given {len(inputs)} tensors")
        given = (*mb_args, *mb_kwargs.values()) if p.virtual > 1 else mb_args  # as pipeline_step gives them
        built = layer_stages(model, p, group, device, blocks, bounds, given, microbatch(inputs[0]), param_dtype,
                             autocast, sequence_mesh)
    else:
        built = _traced_stages(run, p, group, device, [names[id(blocks[b])] for b in bounds[1:-1]], mb_args,
                               mb_kwargs, param_dtype, autocast)
    block_names = {names[id(b)] for b in blocks}
    held, checkpointed = [], []
    for stage in built:
        held += [m for name, m in stage.submod.named_modules() if name in block_names]
        checkpointed += [m for name, m in stage.submod.named_modules() if name in recomputed]
    first = p.stage == 0
    args, kwargs = (run.args, run.kwargs) if first else ((), {})
    if len(built) == 1:
        return (replace(run, model=built[0].submod, parallel=p, pipeline=built[0], args=args, kwargs=kwargs), held,
                checkpointed)
    # several stages a rank: one module holding them, each under its stage's name ("stage 2" of the model)
    from torch import nn

    model = nn.ModuleDict({f"stage{stage.stage_index}": stage.submod for stage in built})
    return replace(run, model=model, parallel=p, pipeline=built, args=args, kwargs=kwargs), held, checkpointed


def _traced_stages(run: Run, p: Parallel, group: Any, device: Any, starts: list[str], mb_args: tuple, mb_kwargs: dict,
                   param_dtype: Any, autocast: Any) -> list[Any]:
    """This rank's stages of the model traced at one microbatch (``mb_args``, ``mb_kwargs``) and split before the
    blocks named ``starts``, as :func:`pipelined` describes them."""
    import torch
    from torch.distributed.pipelining import SplitPoint, pipeline

    model = run.model
    kept = {name: param.data for name, param in model.named_parameters() if param_dtype is not None
            and param.is_floating_point()}
    try:  # (a training step keeps no KV cache, prepare.cache, so export has none to return)
        with _parameters_as(model, {name: data.to(param_dtype) for name, data in kept.items()}), \
                _traced_autocast(run, autocast):
            pipe = pipeline(model, mb_args=mb_args, mb_kwargs=mb_kwargs,
                            split_spec=dict.fromkeys(starts, SplitPoint.BEGINNING))
    except Exception as exc:  # the model's own code cannot be traced as one graph
        cause = exc.__cause__ or exc.__context__ or exc
        raise ModelError(f"--pp: PyTorch could not trace the model into stages (torch.export): "
                         f"{one_line(cause)}") from exc
    made_again(pipe.split_gm)
    built = [pipe.build_stage(index, torch.device(device), group) for index in p.stages_held]
    for stage in built:
        _assigned(stage.submod, kept)  # the stage's parameters in their own type
    return built


def _traced_autocast(run: Run, dtype: Any) -> contextlib.AbstractContextManager:
    """The run's autocast in ``dtype`` (:meth:`Run.autocast`) for tracing a model whose floating weights are not
    all float32; else nothing."""
    import torch

    params = run.model.parameters()
    wanted = dtype is not None and any(p.is_floating_point() and p.dtype != torch.float32 for p in params)
    return replace(run, autocast_dtype=dtype).autocast() if wanted else contextlib.nullcontext()


def _assigned(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Each parameter of ``model`` named in ``data`` made to hold that tensor; returns the tensors they held."""
    own = {}
    for name, param in model.named_parameters():
        if name in data:
            own[name], param.data = param.data, data[name]
    return own


@contextlib.contextmanager
def _parameters_as(model: Any, data: dict[str, Any]) -> Iterator[None]:
    """Each parameter of ``model`` named in ``data`` holds that tensor for the duration, its own after."""
    own = _assigned(model, data)
    try:
        yield
    finally:
        _assigned(model, own)


def made_again(split: Any) -> int:
    """Rewrite the split pipeline ``split`` (its graph calls ``submod_*`` stages in order) so that each stage makes
    again every value it was to receive that an earlier stage computed from no input and no trainable weight, in
    the module of the same name (so its ops are charged to the same row); the earlier stage still computes it for
    itself and no longer sends it. Returns how many stage inputs were dropped."""
    calls = [n for n in split.graph.nodes if n.op == "call_module"]
    dropped = 0
    for call in calls[1:]:
        copies: dict[Any, Any] = {}  # a node made again once per stage, whichever inputs read it
        anchors: dict[Any, Any] = {}  # where copies go in a module: before its first node of its own
        touched = {split}
        for arg in list(call.args):
            found = _source(split, arg)
            route = _route(split, call, call.args.index(arg), found[1]) if found else None
            if not route:
                continue
            placeholders = []
            for module, hop, index in route:  # each call on the way down no longer passes the value
                inner = module.get_submodule(hop.target)
                placeholders.append(_placeholders(inner)[index])
                hop.args = hop.args[:index] + hop.args[index + 1:]
                touched.add(inner)
            owner, _, node = found
            if inner not in anchors:
                anchors[inner] = next(n for n in inner.graph.nodes if n.op != "placeholder")
            with inner.graph.inserting_before(anchors[inner]):
                placeholders[-1].replace_all_uses_with(_copied(owner, node, inner, copies))
            for placeholder in placeholders:
                placeholder.graph.erase_node(placeholder)
            dropped += 1
        for module in touched:
            if hasattr(module, "finalize"):  # torch.export's InterpreterModule
                module.finalize()
            else:
                module.recompile()
    return dropped


def _placeholders(module: Any) -> list[Any]:
    return [n for n in module.graph.nodes if n.op == "placeholder"]


def _route(split: Any, call: Any, index: int, prefix: str) -> list[tuple[Any, Any, int]] | None:
    """The calls that pass the stage's input ``index`` of ``call`` straight down to the module at ``prefix`` (a
    path in the stage ending in a dot, or empty): ``(module, its call node, the input's position)`` for each; None
    where the value is used on the way, or passed another way."""
    route = [(split, call, index)]
    module = split.get_submodule(call.target)
    for part in prefix.split(".")[:-1]:
        placeholder = _placeholders(module)[route[-1][2]]
        users = list(placeholder.users)
        if (len(users) != 1 or users[0].op != "call_module" or users[0].target != part
                or users[0].args.count(placeholder) != 1 or placeholder in users[0].kwargs.values()):
            return None
        route.append((module, users[0], users[0].args.index(placeholder)))
        module = module.get_submodule(part)
    return route


def _source(split: Any, arg: Any) -> tuple[Any, str, Any] | None:
    """Where the stage input ``arg`` (a node of the split graph) is made, if it can be made again anywhere:
    ``(module, its path in the stage that makes it, the node in its graph)`` whose slice of the graph reads no
    input of that module, no trainable weight and no random number; None otherwise (the value is received)."""
    module, prefix, node = split, "", arg
    while module is split or not _remakeable(module, node):
        if node.op == "call_function" and node.target is operator.getitem and node.args[0].op == "call_module":
            call, index = node.args[0], node.args[1]
        elif node.op == "call_module":
            call, index = node, None
        else:
            return None
        prefix = "" if module is split else f"{prefix}{call.target}."  # a stage's paths are the model's
        module = module.get_submodule(call.target)
        out = next(n for n in module.graph.nodes if n.op == "output").args[0]
        node = out[index] if index is not None else out
    return module, prefix, node


def _slice(node: Any) -> list[Any]:
    """The nodes ``node`` is computed from, itself included, in the graph's order."""
    seen: dict[Any, None] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen[n] = None
            stack.extend(n.all_input_nodes)
    return [n for n in node.graph.nodes if n in seen]


def _remakeable(module: Any, node: Any) -> bool:
    """True when ``node``'s slice in ``module``'s graph reads no placeholder, no trainable weight and no random
    number generator (a module it calls holds no trainable weight either)."""
    import torch

    for n in _slice(node):
        if n.op == "placeholder":
            return False
        if n.op == "get_attr" and getattr(_attr(module, n.target), "requires_grad", False):
            return False
        if n.op == "call_module" and any(p.requires_grad for p in module.get_submodule(n.target).parameters()):
            return False
        if n.op == "call_function" and torch.Tag.nondeterministic_seeded in getattr(n.target, "tags", ()):
            return False
    return True


def _attr(module: Any, target: str) -> Any:
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _copied(owner: Any, node: Any, module: Any, env: dict[Any, Any]) -> Any:
    """``node``'s slice of ``owner``'s graph copied into ``module``'s graph at its insertion point (``module`` is
    the module of the same path in another stage); the submodules and attributes the slice reads are given to
    ``module`` where it lacks them. ``env`` maps the nodes copied already to their copies. Returns the copy of
    ``node``."""
    from torch import nn

    for n in _slice(node):
        if n in env:
            continue
        if n.op in ("call_module", "get_attr"):
            parent_path, _, name = n.target.rpartition(".")
            parent = module
            for part in parent_path.split(".") if parent_path else ():
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            if not hasattr(parent, name):
                value = _attr(owner, n.target)
                if isinstance(value, nn.Module):
                    parent.add_module(name, value)
                else:
                    parent.register_buffer(name, value, persistent=False)
        env[n] = module.graph.node_copy(n, lambda a: env[a])
    return env[node]
