"""``--pp`` with ``--tp``: a decoder cut into stages by its list of layers, as torchtitan builds its stages.

Each stage is the model itself with the layers of the other stages left out (and, but on the first stage, its input
embeddings; but on the last, its final norm and head), run eagerly by PyTorch's ``PipelineStage``, so tensor
parallelism shards its ``nn.Linear`` layers as it shards the whole model's. A traced stage (``pipeline()``, the cut
without ``--tp``) cannot be: it holds no ``nn.Linear`` for a plan to shard, and torch.export cannot trace DTensor
parameters. A stage after the first calls the model with the hidden states it receives as ``inputs_embeds``, so the
cut is exact only for a decoder whose base model runs nothing on them before its first layer but what a stage may
make again (rotary tables, the causal mask): the transformers families in :data:`CUT_BY_LAYERS`, each checked
against the whole model in the tests. Torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelprof.errors import UsageError

if TYPE_CHECKING:
    from modelprof.workload import Parallel

#: transformers ``model_type``\\ s whose decoder can be cut by its layers: given ``inputs_embeds``, the base model
#: runs nothing before its first layer that a later stage must not run again (GPT-2 adds position embeddings and
#: dropout there, Granite scales the embeddings, Phi and Starcoder2 drop out; Gemma scales them in its embedding)
CUT_BY_LAYERS = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "phi3", "gemma")


def layer_stages(model: Any, p: Parallel, group: Any, device: Any, blocks: list[Any], bounds: list[int],
                 given: tuple, example: Any, param_dtype: Any = None, autocast: Any = None,
                 sequence_mesh: Any = None) -> list[Any]:
    """This rank's stages (``p.stages_held``) of ``model`` cut between its ``blocks`` (its layer list's items) at
    ``bounds`` (stage ``i`` holds ``blocks[bounds[i]:bounds[i + 1]]``): each a ``PipelineStage`` over a copy of
    the model holding those layers under their own names, sending to its neighbours over ``group``. ``given`` are
    the first stage's positional inputs of a microbatch (its keyword inputs are not checked), ``example`` is a
    microbatch of its token ids. The hidden states a stage sends are that shape and the model's width, in
    ``param_dtype`` (FSDP's mixed-precision policy runs the stage in it), or in the type of the input embeddings
    promoted with the ``autocast`` type (the residual stream adds the layers' autocast outputs to it: a float32
    or float16 model's stays float32 under bfloat16 autocast). With ``sequence_mesh`` (``--sp``: the TP ranks'
    mesh) a stage sends and receives its slice of the sequence, as Megatron's stages do under sequence
    parallelism."""
    import torch

    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in CUT_BY_LAYERS:
        asked, instead = (("--pp with --tp", "drop --tp") if p.tp > 1
                          else ("--pp with --zero 1", "use --ddp, --fsdp or --zero 2") if p.data == "zero1"
                          else (f"--schedule {p.schedule}", "use another --schedule"))
        raise UsageError(f"{asked} cuts a transformers decoder by its layers, built for {', '.join(CUT_BY_LAYERS)}; "
                         f"{type(model).__name__} is {kind or 'not a transformers model'}; {instead} to cut it by "
                         "tracing")
    names = {id(module): name for name, module in model.named_modules()}
    list_name = names[id(blocks[0])].rpartition(".")[0]
    if (model.get_submodule(list_name.rpartition(".")[0]) is not model.base_model
            or list(model.get_submodule(list_name)) != blocks):
        raise UsageError(f"--pp with --tp: {type(model).__name__}'s repeated blocks are not its base model's layers")
    hidden = (*example.shape, config.hidden_size)
    if sequence_mesh is not None:
        if hidden[1] % p.tp:
            raise UsageError(f"--sp splits the sequence over --tp {p.tp} ranks; its {hidden[1]} tokens are not a "
                             "multiple: give a sequence length that is")
        hidden = (hidden[0], hidden[1] // p.tp, hidden[2])
    embedded = model.get_input_embeddings().weight.dtype
    hidden_dtype = param_dtype or (torch.promote_types(embedded, autocast) if autocast is not None else embedded)
    held = []
    for index in p.stages_held:
        first, last = index == 0, index == len(bounds) - 2
        stage = stage_model(model, list_name, bounds[index], bounds[index + 1], first, last, sequence_mesh)
        inputs = given if first else (torch.empty(hidden, dtype=hidden_dtype, device="meta", requires_grad=True),)
        vocab = stage.get_output_embeddings().out_features if last else None
        outputs = torch.empty((*example.shape, vocab) if last else hidden, dtype=hidden_dtype, device="meta",
                              requires_grad=True)
        built = _stage_class()(stage, index, len(bounds) - 1, device, input_args=inputs, output_args=outputs,
                               group=group)
        built._runtime_validate = True  # a stage's hidden states not as given fail, not miscount
        held.append(built)
    return held


def stage_model(model: Any, layers: str, start: int, stop: int, first: bool, last: bool,
                sequence_mesh: Any = None) -> Any:
    """A copy of ``model``'s modules (a decoder of :data:`CUT_BY_LAYERS`; its tensors shared) that runs one stage:
    layers ``start`` to ``stop`` of its base model's list named ``layers`` (a path in the model), its input
    embeddings if ``first``, its final norm and head if ``last``. A later stage is given the hidden states
    (``inputs_embeds``); the last returns the logits, the others the hidden states: with ``sequence_mesh``
    (``--sp``) this rank's slice of them, along the sequence, over that mesh's ranks."""
    base = model.base_model
    # the modules copied, their tensors shared (stages hold different ones; on meta they are fake tensors already,
    # which a deep copy would turn from parameters into plain tensors)
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    with _left_out(model, base, layers.rpartition(".")[2], start, stop, first, last):
        stage = copy.deepcopy(model, shared)
    stage.forward = _stage_forward(stage, first, last, sequence_mesh)
    return stage


@contextlib.contextmanager
def _left_out(model: Any, base: Any, attribute: str, start: int, stop: int, first: bool, last: bool) -> Iterator[None]:
    """While entered, ``model`` holds only layers ``start`` to ``stop`` of its base model's list ``attribute``, under
    their own indices (a ``ModuleList`` slices and iterates by its items, whatever their keys), its input
    embeddings only on the ``first`` stage, its final norm and head only on the ``last``."""
    from torch import nn

    layers = getattr(base, attribute)
    kept = nn.ModuleList()
    for key, layer in list(layers._modules.items())[start:stop]:
        kept.add_module(key, layer)
    embed = next(n for n, m in base.named_children() if m is base.get_input_embeddings())
    head = next(n for n, m in model.named_children() if m is model.get_output_embeddings())
    swaps = [(base, attribute, kept)]
    swaps += [] if first else [(base, embed, None)]
    swaps += [] if last else [(base, "norm", nn.Identity()), (model, head, None)]
    own = [(owner, name, getattr(owner, name)) for owner, name, _ in swaps]
    try:
        for owner, name, value in swaps:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in own:
            setattr(owner, name, value)


def _stage_forward(stage: Any, first: bool, last: bool, sequence_mesh: Any = None) -> Any:
    """A stage's forward: the first is given the model's inputs, a later one the hidden states as ``inputs_embeds``;
    the last returns the logits, the others the hidden states (the base model's, its final norm left out). With
    ``sequence_mesh`` (``--sp``) the hidden states a stage sends and receives are its slice of the sequence,
    handed to the model as the DTensor stream (``prepare/parallel.py``) whose whole shape the model's code sees."""
    model_forward = type(stage).forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not first:
            hidden = args[0]
            if sequence_mesh is not None:
                from torch.distributed.tensor import DTensor, Shard

                hidden = DTensor.from_local(hidden, sequence_mesh, [Shard(1)], run_check=False)
            args, kwargs = (), {"inputs_embeds": hidden}
        if last:
            return model_forward(stage, *args, **kwargs).logits
        hidden = stage.base_model(*args, **kwargs).last_hidden_state
        return hidden.to_local() if sequence_mesh is not None else hidden
    return forward


@functools.cache
def _stage_class() -> Any:
    """``PipelineStage`` whose start-up vote on static shapes holds on a fake process group: every stage is given
    its shapes, so the vote is unanimous on real ranks, but a fake group's receive leaves its buffer at zero (the
    stage would then infer the shapes by messages the fake group does not carry)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage

    class Stage(PipelineStage):
        def _warmup_backward_result(self, received_result: Any = None) -> Any:
            result = super()._warmup_backward_result(received_result)
            # (a literal: under a fake mode, on meta, it keeps its value for the schedule to read)
            return torch.tensor([1], dtype=result.dtype) if dist.get_backend(self.group) == "fake" else result

    return Stage
