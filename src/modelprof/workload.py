"""What runs, as one frozen, torch-free value: the step (a forward, a training step or a generation) and its
precision (dtype, autocast, memory format).

Every command and the Python API take a :class:`Workload`: ``stats``, ``bench``, ``fit``, ``check`` and ``sweep``
describe what they count or time with it, and the child processes of a batch search receive it as JSON. It is
checked once, where it is built: a combination no step can run is refused with one message, and each transform of
:mod:`modelprof.prepare` says what it cannot go with. torchtitan's ``JobConfig`` (one dataclass per concern,
composing one job) is the model.

Adding a dimension (a parallel layout, LoRA, compile) adds a part here, its transform in :mod:`modelprof.prepare`,
and one line registering that transform; no command's code changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from modelprof.errors import UsageError
from modelprof.loading.source import DType


class Optimizer(StrEnum):
    """The optimizers a training step can be counted and timed with (PyTorch's implementations, learning rate 0)."""

    SGD = "sgd"
    MOMENTUM = "momentum"
    ADAM = "adam"
    ADAMW = "adamw"

    @property
    def title(self) -> str:
        return {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}[self.value]


@dataclass(frozen=True)
class Forward:
    """One forward pass, in eval mode under ``torch.inference_mode()``."""

    KIND: ClassVar[str] = "forward"


@dataclass(frozen=True)
class Training:
    """One training step: the forward, the backward of the loss, and an optimizer step.

    ``loss`` is ``fn(output, *inputs) -> scalar``, named ``pkg.mod:fn`` or given as a callable; None sums every
    float output."""

    KIND: ClassVar[str] = "train"

    optimizer: Optimizer = Optimizer.ADAMW
    loss: str | Any = None  #: ``pkg.mod:fn`` (the command line), a callable (the Python API), or None

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))  # "adamw" from the API is welcome too


@dataclass(frozen=True)
class Generation:
    """A prefill of ``prompt_len`` tokens, then ``new_tokens`` decode steps through the KV cache."""

    KIND: ClassVar[str] = "generate"

    prompt_len: int
    new_tokens: int = 16


Step = Forward | Training | Generation
STEPS: dict[str, type] = {s.KIND: s for s in (Forward, Training, Generation)}


@dataclass(frozen=True)
class Precision:
    """The numbers the model runs in: its ``dtype`` (None keeps the model's own), ``amp`` (autocast: 16-bit copies
    per op, float32 weights, gradients and optimizer state) and ``channels_last`` (4-D tensors' memory format)."""

    dtype: DType | None = None
    amp: bool = False
    channels_last: bool = False

    @property
    def dtype_name(self) -> str:
        """The dtype's name, float32 when the model's own is kept."""
        return self.dtype.value if self.dtype else "float32"


@dataclass(frozen=True)
class Checkpointing:
    """Activation checkpointing (torchtitan's ``ActivationCheckpoint``): the forward of every module of these
    classes keeps only its inputs for the backward, which runs it again. ``auto`` names the repeated block (the
    class with children that has the most instances); an empty tuple checkpoints nothing."""

    modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))


class DataParallel(StrEnum):
    """How the data-parallel ranks hold the model: ``ddp`` replicates it and all-reduces the gradients; ``fsdp``
    (ZeRO-3) shards parameters, gradients and optimizer state, all-gathering each block's parameters in the forward
    and again in the backward; ``zero2`` shards gradients and optimizer state and keeps the gathered parameters from
    the forward through the backward (FSDP2 with ``reshard_after_forward=False``); ``zero1`` is DDP whose optimizer
    state is sharded (PyTorch's ``ZeroRedundancyOptimizer``: each rank steps the parameters it owns and broadcasts
    them)."""

    DDP = "ddp"
    FSDP = "fsdp"
    ZERO2 = "zero2"
    ZERO1 = "zero1"

    @property
    def replicated(self) -> bool:
        """True for the layouts that keep the whole model on every rank (DDP, ZeRO-1)."""
        return self in (DataParallel.DDP, DataParallel.ZERO1)


#: The tensor-parallel styles a plan may name (torch's ``ColwiseParallel``/``RowwiseParallel``; transformers' names
#: for a vocabulary-sharded embedding, a column-wise layer whose output is gathered whole, and a row-wise one whose
#: input comes whole and is split).
TP_STYLES = ("colwise", "rowwise", "embedding_rowwise", "colwise_rep", "colwise_gather_output", "rowwise_split_input",
             "rowwise_rep")
#: The tensor-parallel styles DTensor has no class for, applied by transformers' own (``prepare/parallel.py``): with
#: the styles above, every style of every transformers config's ``base_model_tp_plan``.
OWN_STYLES = ("packed_colwise", "packed_rowwise", "moe_tp_experts", "replicated_with_grad_allreduce", "mla_kv_a_proj",
              "local_params", "embedding_colwise", "all_reduce", "moe_identity_expert", "replicate")


#: The pipeline schedules ``--schedule`` names -> PyTorch's name for them (``torch.distributed.pipelining``).
SCHEDULES = {"gpipe": "GPipe", "1f1b": "1F1B", "interleaved-1f1b": "Interleaved 1F1B", "looped-bfs": "Looped BFS",
             "interleaved-zb": "Interleaved Zero Bubble", "zbv": "ZBV Zero Bubble", "dualpipev": "DualPipeV"}
#: The schedules that run several stages a rank, looped (rank r runs stages r, r + pp, r + 2·pp, ...).
MULTI_STAGE = ("interleaved-1f1b", "looped-bfs", "interleaved-zb", "zbv", "dualpipev")
#: The multi-stage schedules that place a rank's two stages in a V: rank r runs stages r and 2·pp - 1 - r.
V_SHAPED = ("zbv", "dualpipev")


@dataclass(frozen=True)
class Parallel:
    """The job a step runs in (torchtitan's ``ParallelismConfig``): ``gpus`` ranks, the data-parallel layout
    (None: nothing sharded over data), the tensor-parallel degree ``tp`` (groups of ``tp`` ranks share each sharded
    weight; ``gpus // tp`` data-parallel groups), the TP plan (module-name pattern -> style; empty: the model's own)
    and the ``rank`` whose share is counted (rank 0 by default; rank r is data-parallel rank ``r // tp``,
    tensor-parallel rank ``r % tp``); ``pp`` pipeline stages, each a contiguous run of the model's repeated blocks,
    fed ``microbatches`` microbatches a step (0: as many as stages; rank r is stage ``r`` when pipelining alone) in the
    order of ``schedule``: GPipe (every forward, then every backward), 1F1B (after a warm-up of as many forwards as
    stages after it, one backward and one forward in turn, so a stage holds at most that many microbatches'
    activations), or one of :data:`MULTI_STAGE`: interleaved 1F1B (each rank runs ``stages_per_rank`` stages, the
    model cut into ``pp · stages_per_rank``, which shortens the pipeline's bubble), looped BFS (each stage runs all
    its microbatches in turn), interleaved zero bubble (the backward split into the inputs' and the weights'
    gradients, the latter run to fill the bubble), ZBV or DualPipeV (two stages a rank placed in a V, a decoder
    cut by its layers); with a data-parallel layout, each stage is sharded over its ``dp`` ranks (:attr:`stage`).
    ``sequence_parallel`` splits the activations between the TP layers along the sequence (``--sp``)."""

    gpus: int = 1
    data: DataParallel | None = None
    rank: int = 0
    tp: int = 1
    tp_plan: tuple[tuple[str, str], ...] = ()
    pp: int = 1
    microbatches: int = 0
    schedule: str = "gpipe"  #: the pipeline schedule, a key of :data:`SCHEDULES`
    #: stages a rank runs (0: 2 under a schedule of :data:`MULTI_STAGE`, else 1); rank r's are r, r + pp, ...
    stages_per_rank: int = 0
    #: sequence parallelism with ``tp`` (Megatron's, torchtitan's): between the tensor-parallel layers, the
    #: activations (and the norms' work) split over the TP ranks along the sequence, gathered before and
    #: reduce-scattered after each group of sharded layers
    sequence_parallel: bool = False

    def __post_init__(self) -> None:
        if self.data is not None:
            object.__setattr__(self, "data", DataParallel(self.data))
        plan = self.tp_plan.items() if isinstance(self.tp_plan, dict) else self.tp_plan
        object.__setattr__(self, "tp_plan", tuple((str(k), str(v)) for k, v in plan))

    @property
    def sharded(self) -> bool:
        """True when the step runs as one rank of a job."""
        return self.data is not None or self.tp > 1 or self.pp > 1

    @property
    def dp(self) -> int:
        """The data-parallel degree: how many groups of ``tp`` × ``pp`` ranks."""
        return self.gpus // (self.tp * self.pp)

    @property
    def stage(self) -> int:
        """The pipeline stage rank ``rank`` runs: the job's mesh is (pp, dp, tp), the stages outermost, as
        torchtitan lays it out, so each stage is ``gpus // pp`` consecutive ranks."""
        return self.rank // (self.gpus // self.pp)

    @property
    def virtual(self) -> int:
        """The stages each rank runs (:attr:`stages_per_rank`, or its default)."""
        return self.stages_per_rank or (2 if self.schedule in MULTI_STAGE else 1)

    @property
    def stages_held(self) -> tuple[int, ...]:
        """The pipeline stages rank ``rank`` runs: looped (``stage``, ``stage + pp``, ...) or, for a V-shaped
        schedule (:data:`V_SHAPED`), ``stage`` and ``2·pp - 1 - stage``."""
        if self.schedule in V_SHAPED:
            return (self.stage, 2 * self.pp - 1 - self.stage)
        return tuple(self.stage + k * self.pp for k in range(self.virtual))

    @property
    def chunks(self) -> int:
        """The microbatches a pipelined step is split into (as many as stages unless given)."""
        return self.microbatches or self.pp

    def describe(self) -> str:
        """The layout in words: ``fsdp``, ``tp 2``, ``fsdp 4 × tp 2``, ``pp 4``, ``fsdp 2 × tp 2 × pp 2``, ``tp 2 + sp``
        (sequence-parallel)."""
        data = self.data.value if self.data else None
        if self.pp > 1:
            layout = " × ".join([*([f"{data} {self.dp}"] if data else []), *([self._tp] if self.tp > 1 else []),
                                 f"pp {self.pp}"])
            if self.virtual > 1:
                layout += f" × {self.virtual} stages a rank"
            return f"{layout}, {self.chunks} microbatches, {SCHEDULES[self.schedule]}"
        if self.tp == 1:
            return data or "one rank"
        return f"{data} {self.dp} × {self._tp}" if data else self._tp

    @property
    def _tp(self) -> str:
        return f"tp {self.tp}{' + sp' if self.sequence_parallel else ''}"


@dataclass(frozen=True)
class Workload:
    """What runs: the step, its precision, its activation checkpointing and the parallel job it is a rank of. Built
    once (from the command line's one option group, or by an API caller) and handed whole to every command; a
    combination that cannot run raises :class:`UsageError`."""

    step: Step = field(default_factory=Forward)
    precision: Precision = field(default_factory=Precision)
    checkpoint: Checkpointing = field(default_factory=Checkpointing)
    parallel: Parallel = field(default_factory=Parallel)

    def __post_init__(self) -> None:
        from modelprof.prepare import refusal

        message = refusal(self)
        if message:
            raise UsageError(message)

    @property
    def kind(self) -> str:
        """``forward``, ``train`` or ``generate``."""
        return self.step.KIND

    @property
    def training(self) -> Training | None:
        """The training step, or None."""
        return self.step if isinstance(self.step, Training) else None

    @property
    def generation(self) -> Generation | None:
        """The generation, or None."""
        return self.step if isinstance(self.step, Generation) else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a child process of the batch search gets the workload this way)."""
        step = {"kind": self.kind, **{k: v for k, v in vars(self.step).items()}}
        precision = {**vars(self.precision), "dtype": self.precision.dtype.value if self.precision.dtype else None}
        parallel = {**vars(self.parallel), "data": self.parallel.data.value if self.parallel.data else None}
        return {"step": step, "precision": precision, "checkpoint": list(self.checkpoint.modules),
                "parallel": parallel}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workload:
        step = dict(d["step"])
        kind = STEPS[step.pop("kind")]
        if kind is Training:
            step["optimizer"] = Optimizer(step["optimizer"])
        precision = dict(d["precision"])
        precision["dtype"] = DType(precision["dtype"]) if precision["dtype"] else None
        return cls(kind(**step), Precision(**precision), Checkpointing(tuple(d.get("checkpoint", ()))),
                   Parallel(**d.get("parallel", {})))


#: A forward in the model's own precision: what counting does when nothing else is asked.
FORWARD = Workload()
