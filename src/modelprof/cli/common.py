"""What every command shares: the option groups (model source, workload, output), declared once, and the way a
report is written. Each group's options arrive at the command as one value: a
:class:`~modelprof.loading.source.ModelSource` (``source``), a :class:`~modelprof.workload.Workload`
(``workload``) and an :class:`~modelprof.loading.source.OutputOptions` (``out``)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from modelprof import units
from modelprof.errors import Hint, ModelError, ModelprofError, UsageError, one_line
from modelprof.loading.source import (
    MODEL_DTYPES,
    Device,
    DType,
    Inputs,
    InputSpec,
    ModelSource,
    OutputOptions,
    input_options,
    parse_kwargs,
)
from modelprof.render import OutputFormat, render
from modelprof.reports.document import Document
from modelprof.workload import (
    SCHEDULES,
    Checkpointing,
    DataParallel,
    Forward,
    Generation,
    Optimizer,
    Parallel,
    Precision,
    Training,
    Workload,
)

#: The heads a transformers config TARGET can be built with (modelprof.loading.hf.Task, without importing it here).
TASKS = ["causal-lm", "seq2seq", "encoder", "masked-lm", "sequence-classification", "image-classification",
         "speech-seq2seq"]

#: How the command line words each kind of fix a library error points to.
HINTS = {
    Hint.INPUTS: "check the input shapes and dtypes given with --shape/--input/--inputs",
    Hint.KWARGS: """give its arguments as JSON, e.g. --kwargs '{"num_classes": 10}'""",
    Hint.STRICT: "register one with modelprof.register_formula or drop --strict",
    Hint.META_DEVICE: "count it without allocating anything with --device meta",
    Hint.TP_PLAN: "the layer cannot take what the tensor-parallel plan hands it; give a plan that leaves it whole with "
                  "--tp-plan FILE",
    Hint.VALUES: "the layer's shapes depend on tensor values, which the meta device does not have: count it on "
                 "the CPU with --device cpu (fit, which counts on meta, cannot: measure with bench --find-batch)",
    Hint.INPUTS_OR_TP_PLAN: "check the input shapes and dtypes given with --shape/--input/--inputs; if they run "
                            "without --tp, the layer cannot take the tensor-parallel plan's shards: give a plan that "
                            "leaves it whole with --tp-plan FILE",
}


def check_writable(output: str) -> None:
    """Refuse an output path that cannot be written, before any work is done (and without touching it)."""
    if output == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"-o {output}: is a folder; give a file name such as {output.rstrip('/')}/report.json")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"-o {output}: folder '{parent}' does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"-o {output}: not writable; choose a path you can write to")


def emit(document: Document, out: OutputOptions) -> None:
    """Render ``document`` in the chosen format and write it (``-`` is the report stream: the real stdout)."""
    text = render(document, out.fmt, color=out.color)
    if out.path == "-":
        click.echo(text, nl=False, file=out.stream)
        return
    try:
        Path(out.path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {out.path}: cannot write ({exc.strerror}); choose another path") from None


def output_options(fmt: str, output: str) -> OutputOptions:
    """Check ``-o`` and decide colour (a table on a terminal only); the report goes to today's stdout."""
    check_writable(output)
    color = output == "-" and fmt == OutputFormat.TABLE and sys.stdout.isatty()
    return OutputOptions(fmt=fmt, path=output, color=color, stream=sys.stdout)


#: ``--format`` and ``-o``, for every command that writes a report.
OUTPUT_OPTIONS = (
    click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="table",
                 show_default=True),
    click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="- is stdout."),
)


def output_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command ``--format`` and ``-o``, delivered as one :class:`OutputOptions` (``out``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, fmt: str, output: str, **options: Any) -> None:
        command(*args, out=output_options(fmt, output), **options)

    return _decorated(wrapper, OUTPUT_OPTIONS)


def _decorated(command: Callable[..., None], options: tuple) -> Callable[..., None]:
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.contextmanager
def users_code() -> Iterator[None]:
    """While a user's model is imported, built and run: what it prints goes to stderr, so stdout holds only the
    report, and its ``sys.exit`` is a model failure, not modelprof's exit code."""
    with contextlib.redirect_stdout(sys.stderr):
        try:
            yield
        except SystemExit as exc:
            raise ModelError(f"the model's code called sys.exit({exc.code!r}) while modelprof was building or "
                             "running it") from exc


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str], Callable[[float], None]] | None]:
    """A rich progress bar on stderr, one task per batch size; yields None when disabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        def task(label: str) -> Callable[[float], None]:
            task_id = bar.add_task(label, total=1.0)
            return lambda done: bar.update(task_id, completed=done)

        yield task


def parsed_by(parse: Callable[[str], int]) -> Callable[[click.Context, click.Parameter, str | None], int | None]:
    """A click callback that parses an option's text (``4GiB``, ``989T``) or says why it cannot."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


parse_bytes_option = parsed_by(units.parse_bytes)
parse_count_option = parsed_by(units.parse_count)

_SOURCE_OPTIONS = (
    click.argument("target"),
    click.option("--shape", help="One float input, without the batch: 3,224,224."),
    click.option("--input", "input_specs", multiple=True, metavar="[NAME=]SHAPE[:DTYPE[:HIGH]]",
                 help="One input per use, in call order; NAME= makes it a keyword argument. "
                      "DTYPE: " + ", ".join(d.value for d in DType) + "; integers are drawn from [0, HIGH)."),
    click.option("--inputs", "inputs_factory", metavar="MODULE:FUNCTION",
                 help="A function of the batch size returning a tensor, tuple, dict or (tuple, dict)."),
    click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Batch size prepended to every input."),
    click.option("--kwargs", "kwargs_json", metavar="JSON", help="""Constructor arguments: '{"num_classes": 10}'."""),
    click.option("--device", type=click.Choice([d.value for d in Device]), default="cpu", show_default=True,
                 help="meta builds and runs the model on shapes alone, allocating no weights."),
    click.option("--task", type=click.Choice(TASKS),
                 help="For a transformers config TARGET: the head (default: the config's architectures)."),
)

_PRECISION_OPTIONS = (
    click.option("--dtype", type=click.Choice([d.value for d in MODEL_DTYPES]),
                 help="Cast the model and its float inputs."),
    click.option("--amp", is_flag=True, help="Autocast (bfloat16 on CPU and meta, float16 on CUDA): 16-bit copies "
                 "of weights and activations per op, float32 gradients and optimizer state."),
    click.option("--channels-last", is_flag=True, help="Model and 4-D inputs in channels-last memory format."),
)

_TRAINING_OPTIONS = (
    click.option("--train", is_flag=True, help="A training step: forward, backward of the loss, optimizer step "
                 "(learning rate 0, the model left unchanged)."),
    click.option("--optimizer", type=click.Choice([o.value for o in Optimizer]), default="adamw", show_default=True,
                 help="With --train: the optimizer stepped."),
    click.option("--loss", metavar="MODULE:FUNCTION", help="With --train: fn(output, *inputs) -> scalar; default: "
                 "the sum of every float output."),
    click.option("--checkpoint", metavar="auto|CLASS,...", help="With --train: activation checkpointing of the "
                 "modules of these classes (auto: the repeated block); the backward recomputes their forward."),
)


#: ``--convention``: stats and check count a forward as a peer tool does (names checked where it is used).
CONVENTION_OPTION = click.option(
    "--convention", metavar="NAME", help="Count as a peer tool counts, in its unit, per layer and in total: thop, "
    "fvcore, ptflops, calflops or flopcounter (PyTorch's FlopCounterMode). See docs/conventions.md.")


_PARALLEL_OPTIONS = (
    click.option("--gpus", type=click.IntRange(min=1), default=None,
                 help="Ranks in the job: count one rank's share of a sharded step (with --fsdp, --zero or --ddp); "
                 "default: --tp × --pp (fit: without it, the fewest GPUs that fit)."),
    click.option("--fsdp", is_flag=True, help="FSDP2 (ZeRO-3): parameters, gradients and optimizer state sharded, "
                 "one unit per repeated block."),
    click.option("--zero", type=click.Choice(["1", "2", "3"]), help="ZeRO stage: 3 is --fsdp; 1 is DDP with the "
                 "optimizer state sharded (ZeroRedundancyOptimizer); 2 keeps the gathered "
                 "parameters from the forward through the backward."),
    click.option("--ddp", is_flag=True, help="DDP: the model replicated, gradients all-reduced."),
    click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Tensor-parallel degree: each sharded layer split over TP ranks (the model's own plan, or "
                 "--tp-plan); --gpus / TP data-parallel groups."),
    click.option("--tp-plan", "tp_plan", type=click.Path(dir_okay=False), metavar="FILE",
                 help="With --tp: a JSON object of module-name patterns ('layers.*.mlp.up_proj') -> colwise | "
                 "rowwise, for a model without a plan of its own."),
    click.option("--sp", "sequence_parallel", is_flag=True,
                 help="With --tp: sequence parallelism (Megatron's, torchtitan's): the activations between the "
                 "sharded layers, and the norms' work, split over the TP ranks along the sequence (dimension 1), "
                 "all-gathered before and reduce-scattered after each attention and MLP."),
    click.option("--rank", type=click.IntRange(min=0), default=0, show_default=True,
                 help="With --gpus: the rank whose share is counted."),
    click.option("--pp", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Pipeline stages (with --train): the model cut between its repeated blocks by PyTorch's "
                 "pipelining, run by PyTorch's schedule (--schedule); each stage on --gpus/N ranks, sharded over "
                 "them by --fsdp, --zero 2 or --ddp."),
    click.option("--microbatches", type=click.IntRange(min=1), default=None,
                 help="With --pp: microbatches a step (default: --pp); the batch must be a multiple."),
    click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="gpipe", show_default=True,
                 help="With --pp: GPipe (every forward, then every backward), 1F1B (a backward after each "
                 "forward once the pipeline is full: fewer microbatches' activations held), or several stages a "
                 "rank (--stages-per-rank): interleaved-1f1b, looped-bfs, interleaved-zb (zero bubble); zbv and "
                 "dualpipev place a rank's two stages in a V."),
    click.option("--stages-per-rank", "stages_per_rank", type=click.IntRange(min=1), default=None,
                 help="With a multi-stage --schedule: stages each rank runs (default 2); the model is cut into "
                 "--pp × this many stages, rank r running stages r, r + pp, ... (a V: r and 2·pp - 1 - r)."),
)


def parallel_from_options(gpus: int | None = None, fsdp: bool = False, zero: str | None = None, ddp: bool = False,
                          rank: int = 0, tp: int = 1, tp_plan: str | None = None, pp: int = 1,
                          microbatches: int | None = None, schedule: str = "gpipe",
                          stages_per_rank: int | None = None, sequence_parallel: bool = False) -> Parallel:
    """The job the parallel options describe (``gpus`` None: one tensor-parallel group, ``tp`` ranks); two layouts
    at once are refused, and a plan file is read here."""
    chosen = [name for name, on in (("--fsdp", fsdp), ("--zero", zero), ("--ddp", ddp)) if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} are two data-parallel layouts; choose one (--zero 3 is --fsdp)")
    data = DataParallel.FSDP if fsdp or zero == "3" else DataParallel.ZERO2 if zero == "2" else \
        DataParallel.ZERO1 if zero == "1" else DataParallel.DDP if ddp else None
    return Parallel(tp * pp if gpus is None else gpus, data, rank, tp, read_tp_plan(tp_plan) if tp_plan else (), pp,
                    microbatches or 0, schedule, stages_per_rank or 0, sequence_parallel)


def read_tp_plan(path: str) -> tuple[tuple[str, str], ...]:
    """A ``--tp-plan`` file: a JSON object of module-name pattern -> style."""
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--tp-plan {path}: cannot read it as JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(plan, dict) or not plan or not all(isinstance(v, str) for v in plan.values()):
        raise UsageError(f"--tp-plan {path}: expected a JSON object of module-name pattern -> style, such as "
                         '{"layers.*.fc1": "colwise", "layers.*.fc2": "rowwise"}')
    return tuple(plan.items())


def _generation_options(help_text: str, min_new: int) -> tuple:
    return (
        click.option("--generate", is_flag=True, help=help_text),
        click.option("--prompt-len", type=click.IntRange(min=1), help="With --generate: the prompt's tokens."),
        click.option("--new-tokens", type=click.IntRange(min=min_new), default=16, show_default=True,
                     help="With --generate: the tokens generated."),
    )


def workload_from_options(train: bool, optimizer: str, loss: str | None, dtype: str | None, amp: bool,
                          channels_last: bool, generate: bool = False, prompt_len: int | None = None,
                          new_tokens: int = 16, checkpoint: str | None = None, parallel: Parallel | None = None
                          ) -> Workload:
    """The one :class:`Workload` the workload options describe; a combination that cannot run is refused here."""
    if generate != bool(prompt_len):
        raise UsageError("--generate and --prompt-len go together: --generate --prompt-len 512 --new-tokens 64")
    if (loss or optimizer != Optimizer.ADAMW) and not train:
        raise UsageError("--loss and --optimizer describe a training step; add --train")
    if train and generate:
        raise UsageError("--generate runs inference; drop --train or --generate")
    if train:
        if loss:
            from modelprof.counting.train import resolve_loss

            resolve_loss(loss)  # a name that is no function is refused now, before anything is built
        step: Forward | Training | Generation = Training(Optimizer(optimizer), loss)
    elif generate:
        step = Generation(prompt_len, new_tokens)
    else:
        step = Forward()
    modules = tuple(name.strip() for name in (checkpoint or "").split(",") if name.strip())
    return Workload(step, Precision(DType(dtype) if dtype else None, amp, channels_last), Checkpointing(modules),
                    parallel or Parallel())


def model_command(generate: str | None = None, min_new: int = 1
                  ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command TARGET with the model-source, workload and output option groups, delivered as ``source``,
    ``workload`` and ``out``; ``batch`` and the command's own options pass through. ``generate`` is the help of
    ``--generate`` for the commands that run generation (None: they do not)."""
    workload_options = _PRECISION_OPTIONS + _TRAINING_OPTIONS + _PARALLEL_OPTIONS
    if generate is not None:
        workload_options += _generation_options(generate, min_new)

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def wrapper(target: str, shape: str | None, input_specs: tuple[str, ...], inputs_factory: str | None,
                    kwargs_json: str | None, device: str, task: str | None, fmt: str, output: str,
                    **options: Any) -> None:
            out = output_options(fmt, output)
            names = ("train", "optimizer", "loss", "dtype", "amp", "channels_last", "generate", "prompt_len",
                     "new_tokens", "checkpoint")
            parallel = parallel_from_options(**{k: options.pop(k) for k in ("gpus", "fsdp", "zero", "ddp", "rank",
                                                                                  "tp", "tp_plan", "pp",
                                                                                  "microbatches", "schedule",
                                                                                  "stages_per_rank",
                                                                                  "sequence_parallel")})
            workload = workload_from_options(**{k: options.pop(k) for k in names if k in options}, parallel=parallel)
            generation = workload.generation
            if generation and (shape or input_specs or inputs_factory):
                raise UsageError("--prompt-len makes the prompt; drop --shape/--input/--inputs")
            inputs = (Inputs(specs=(InputSpec((generation.prompt_len,), DType.INT64, name="input_ids"),))
                      if generation else input_options(shape, input_specs, inputs_factory))
            source = ModelSource(target=target, inputs=inputs, kwargs=parse_kwargs(kwargs_json),
                                 device=Device(device), task=task)
            with users_code():
                command(source=source, workload=workload, out=out, **options)

        return _decorated(wrapper, _SOURCE_OPTIONS + workload_options + OUTPUT_OPTIONS)

    return decorate


def error_line(exc: ModelprofError) -> str:
    """A library error in the command line's words: the flag it is about, the message, the fix."""
    prefix = f"--{exc.option.replace('_', '-')}: " if exc.option else ""
    hint = f"; {HINTS[exc.hint]}" if exc.hint else ""
    return f"{prefix}{one_line(exc)}{hint}"
