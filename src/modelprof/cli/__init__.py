"""The command line. It parses options into objects, calls a service, and renders its document: no arithmetic.

Torch is imported inside the commands, not here, so ``modelprof --help`` and ``--version`` start at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from modelprof import __version__, units
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
from modelprof.reports.budgets import LIMITS, load_budget, parse_limit
from modelprof.reports.document import Document

#: The heads a transformers config TARGET can be built with (modelprof.loading.hf.Task, without importing it here).
TASKS = ["causal-lm", "seq2seq", "encoder", "masked-lm", "sequence-classification", "image-classification",
         "speech-seq2seq"]

#: How the command line words each kind of fix a library error points to.
HINTS = {
    Hint.INPUTS: "check the input shapes and dtypes given with --shape/--input/--inputs",
    Hint.KWARGS: """give its arguments as JSON, e.g. --kwargs '{"num_classes": 10}'""",
    Hint.STRICT: "register one with modelprof.register_formula or drop --strict",
    Hint.META_DEVICE: "count it without allocating anything with --device meta",
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


def generation_options(help_text: str, min_new: int = 1) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--generate``, ``--prompt-len`` and ``--new-tokens``, shared by stats, bench and fit."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def checked(*args: Any, generate: bool, prompt_len: int | None, **kwargs: Any) -> None:
            if generate != bool(prompt_len):
                raise UsageError("--generate and --prompt-len go together: --generate --prompt-len 512 "
                                 "--new-tokens 64")
            command(*args, generate=generate, prompt_len=prompt_len, **kwargs)

        for option in reversed((
            click.option("--generate", is_flag=True, help=help_text),
            click.option("--prompt-len", type=click.IntRange(min=1), help="With --generate: the prompt's tokens."),
            click.option("--new-tokens", type=click.IntRange(min=min_new), default=16, show_default=True,
                         help="With --generate: the tokens generated."),
        )):
            checked = option(checked)
        return checked

    return decorate


_MODEL_OPTIONS = (
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
    click.option("--dtype", type=click.Choice([d.value for d in MODEL_DTYPES]),
                 help="Cast the model and its float inputs."),
    click.option("--task", type=click.Choice(TASKS),
                 help="For a transformers config TARGET: the head (default: the config's architectures)."),
    click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="table",
                 show_default=True),
    click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="- is stdout."),
)


#: ``--amp`` for the commands that count (stats, fit, check); bench's ``--amp`` times under autocast instead.
amp_option = click.option("--amp", is_flag=True, help="Count under autocast (bfloat16 on CPU and meta, float16 on "
                          "CUDA): 16-bit copies of weights and activations, float32 gradients and optimizer state.")


def model_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command TARGET and the model and output options, delivered as one :class:`ModelSource` (``source``)
    and one :class:`OutputOptions` (``out``); ``batch`` and the command's own options pass through."""

    @functools.wraps(command)
    def wrapper(target: str, shape: str | None, input_specs: tuple[str, ...], inputs_factory: str | None,
                kwargs_json: str | None, device: str, dtype: str | None, task: str | None, fmt: str, output: str,
                **options: Any) -> None:
        out = output_options(fmt, output)
        prompt_len = options.get("prompt_len")
        if prompt_len and (shape or input_specs or inputs_factory):
            raise UsageError("--prompt-len makes the prompt; drop --shape/--input/--inputs")
        inputs = (Inputs(specs=(InputSpec((prompt_len,), DType.INT64, name="input_ids"),)) if prompt_len
                  else input_options(shape, input_specs, inputs_factory))
        source = ModelSource(target=target, inputs=inputs,
                             kwargs=parse_kwargs(kwargs_json), device=Device(device),
                             dtype=DType(dtype) if dtype else None,
                             channels_last=options.pop("channels_last", False), task=task)
        with users_code():
            command(source=source, out=out, **options)

    for option in reversed(_MODEL_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="modelprof")
@click.option("--debug", is_flag=True, help="Show tracebacks (also accepted after the command).")
def cli(debug: bool) -> None:
    """Profile PyTorch models: parameters, compute, memory traffic, latency and throughput."""


@cli.command()
@model_command
@click.option("--depth", type=click.IntRange(min=0), help="Fold rows into the module tree at this depth "
              "(0: total only). Default: leaf rows.")
@click.option("--strict", is_flag=True, help="Exit 1 when any op with a cost could not be counted.")
@click.option("--crosscheck", "--backend", "crosscheck", type=click.Choice(["thop", "torchstat"]),
              help="Also run thop or torchstat and show their per-layer numbers beside modelprof's, with why they "
                   "differ (pip install 'modelprof[crosscheck]').")
@click.option("--train", is_flag=True, help="Count one training step: forward, backward of the loss, optimizer "
              "step, each per layer (the model is left unchanged).")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="adamw",
              show_default=True, help="With --train: the optimizer whose step is counted.")
@amp_option
@click.option("--loss", metavar="MODULE:FUNCTION", help="With --train: fn(output, *inputs) -> scalar; default: "
              "the sum of every float output.")
@click.option("--sweep", "sweep_text", metavar="DIM=V1,V2,...", help="Count at each value of the batch or of a "
              "named input size (--input input_ids=SEQ:int64:32000 --sweep seq=128,256,512) and say how each total "
              "grows.")
@click.option("--plot", type=click.Path(dir_okay=False), help="With --sweep: save a chart of the totals against "
              "the swept value (needs matplotlib).")
@generation_options("Count generation: one prefill of --prompt-len tokens, then --new-tokens decode steps through "
                    "the KV cache (a transformers causal LM).")
def stats(source: ModelSource, out: OutputOptions, batch: int, depth: int | None, strict: bool,
          crosscheck: str | None, train: bool, optimizer: str, amp: bool, loss: str | None, sweep_text: str | None,
          plot: str | None, generate: bool, prompt_len: int | None, new_tokens: int) -> None:
    """Per-layer Params, MAdd, Flops, MemRead and MemWrite of TARGET, with exact totals; with --train, of a whole
    training step (forward, backward, optimizer).

    TARGET is pkg.module:Name or path/to/file.py:Name: an nn.Module class, a function returning a module, or a
    module instance.
    """
    from modelprof.counting.crosscheck import Tool
    from modelprof.counting.stats import Generation, TrainStep, run_stats
    from modelprof.counting.train import Optimizer
    from modelprof.reports.views import stats_document

    _check_stats_options(source, batch, depth, crosscheck, train, optimizer, loss, sweep_text, plot, generate, amp)
    step = TrainStep(Optimizer(optimizer), loss) if train else None
    generation = Generation(prompt_len, new_tokens) if generate else None
    if sweep_text:
        _stats_sweep(source, out, batch, step, sweep_text, plot, amp)
        return
    report, checked = run_stats(source, batch, depth, Tool(crosscheck) if crosscheck else None, step, generation,
                                amp)
    emit(stats_document(report, checked), out)
    if strict and report.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in report.unsupported.items())
        raise ModelprofError(f"--strict: {len(report.unsupported)} op(s) had no cost formula ({ops})",
                             hint=Hint.STRICT)


def _check_stats_options(source: ModelSource, batch: int, depth: int | None, crosscheck: str | None, train: bool,
                         optimizer: str, loss: str | None, sweep_text: str | None, plot: str | None,
                         generate: bool, amp: bool) -> None:
    """Refuse stats option combinations that cannot work, before anything is built."""
    refusals = [
        (amp and (generate or crosscheck),
         "--amp counts a forward or a training step under autocast; drop --generate and --crosscheck"),
        ((loss or optimizer != "adamw") and not train, "--loss and --optimizer describe a training step; add --train"),
        (train and crosscheck, "--crosscheck compares forward counts; drop --train or --crosscheck"),
        (generate and (train or crosscheck), "--generate counts inference; drop --train and --crosscheck"),
        (sweep_text and (generate or crosscheck or depth is not None),
         "--sweep reports totals; drop --generate, --crosscheck and --depth"),
        (plot and not sweep_text,
         "stats draws a plot of a sweep; add --sweep DIM=V1,V2,... (bench --plot draws timings)"),
        (crosscheck == "torchstat" and batch != 1,
         "--crosscheck torchstat: torchstat always profiles one sample; use --batch 1"),
        (crosscheck and source.inputs.factory,
         "--crosscheck needs inputs described with --shape/--input (the single-tensor adapter rebuilds them); "
         "--inputs factories are not supported"),
    ]
    for refused, message in refusals:
        if refused:
            raise UsageError(message)
    if plot:
        check_writable(plot)


def _stats_sweep(source: ModelSource, out: OutputOptions, batch: int, step: Any, sweep_text: str,
                 plot: str | None, amp: bool) -> None:
    """``stats --sweep``: the totals at each value, and the chart when asked."""
    from modelprof.planning.sweep import parse_sweep, run_sweep
    from modelprof.reports.views import sweep_document

    dim, values = parse_sweep(sweep_text)
    swept = run_sweep(source, dim, values, batch, step, amp)
    emit(sweep_document(swept), out)
    if plot:
        from modelprof.render.plot import save_sweep_plot

        save_sweep_plot(swept, plot)


def _parsed_by(parse: Callable[[str], int]) -> Callable[[click.Context, click.Parameter, str | None], int | None]:
    """A click callback that parses an option's text (``4GiB``, ``989T``) or says why it cannot."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


_parse_bytes_option = _parsed_by(units.parse_bytes)
_parse_count_option = _parsed_by(units.parse_count)


@cli.command()
@model_command
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up calls before timing (also at least --warmup-time).")
@click.option("--warmup-time", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="SECONDS")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              metavar="SECONDS", help="Time budget of the measurement per batch size.")
@click.option("--reps", type=click.IntRange(min=1), help="Time exactly this many calls instead of --duration.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option("--amp", is_flag=True, help="Autocast: float16 on CUDA, bfloat16 on CPU.")
@click.option("--train", is_flag=True, help="Time training steps: forward, backward of the summed outputs, optimizer "
              "step (learning rate 0, the model left unchanged).")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="adamw",
              show_default=True, help="With --train: the optimizer stepped.")
@click.option("--channels-last", is_flag=True, help="Model and 4-D inputs in channels-last memory format.")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model; compile time is reported apart from the timed calls.")
@click.option("--find-batch", is_flag=True, help="Find the largest batch that fits and the best-throughput one.")
@click.option("--max-batch", type=click.IntRange(min=1), help="Upper bound for --find-batch.")
@click.option("--batch-tolerance", type=click.FloatRange(min=0, max=1), default=0.01, show_default=True,
              help="Stop bisecting when the gap is within this share of the answer.")
@click.option("--memory-limit", callback=_parse_bytes_option, metavar="SIZE",
              help="CPU: probe each batch in a child process capped at this much memory (4GiB, 500MB).")
@click.option("--layers", is_flag=True, help="Also time every layer (every row at --depth) and put it against the "
              "device's roofline.")
@click.option("--depth", type=click.IntRange(min=1), help="With --layers: rows folded at this depth of the module "
              "tree (default: leaf rows, as stats).")
@click.option("--peak-flops", callback=_parse_count_option, metavar="N",
              help="With --layers: the device's peak MAdd/s (FLOP/s), e.g. 989T; default: calibrated.")
@click.option("--peak-bandwidth", callback=_parse_bytes_option, metavar="SIZE",
              help="With --layers: the device's peak memory bandwidth per second, e.g. 3.35TB; default: calibrated.")
@click.option("--sweep", "sweep_text", metavar="DIM=V1,V2,...", help="Time at each value of the batch or of a named "
              "input size (--input input_ids=SEQ:int64 --sweep seq=128,256) and say how latency grows.")
@generation_options("Time generation of a transformers causal LM: time to first token and per-token latency "
                    "(--reps generations, default 3).", min_new=2)
@click.option("--plot", type=click.Path(dir_okay=False), help="Save a chart (needs matplotlib): throughput against "
              "batch, or with --layers the roofline.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(source: ModelSource, out: OutputOptions, batch: int, warmup: int, warmup_time: float, duration: float,
          reps: int | None, amp: bool, train: bool, optimizer: str, sweep_text: str | None, generate: bool,
          prompt_len: int | None, new_tokens: int, plot: str | None, quiet: bool, **options: Any) -> None:
    """Latency and throughput of TARGET; with --find-batch, the largest batch that fits and the best one; with
    --layers, the time of every layer against the device's roofline.

    Each call is timed alone (CUDA events on a GPU, time.perf_counter on a CPU) after a warm-up, in eval mode
    under torch.inference_mode(); every raw sample is kept in the JSON output.
    """
    find_batch, max_batch, memory_limit = options["find_batch"], options["max_batch"], options["memory_limit"]
    _check_bench_options(source, find_batch, memory_limit, options["compile_model"])
    if generate:
        _bench_generation(source, out, batch, prompt_len, new_tokens, reps, options)
        return
    if options["layers"] and find_batch:
        raise UsageError("--layers times one batch; drop --find-batch, or find the batch first and then time its "
                         "layers with --batch N")
    memory_limit, limit_from = _memory_limit(source, find_batch, max_batch, memory_limit)
    if plot:
        check_writable(plot)
    from modelprof.render.plot import save_plot
    from modelprof.reports.views import bench_document
    from modelprof.timing.bench import BenchOptions, run_bench
    from modelprof.timing.measure import TimingSettings

    if train and options["layers"]:
        raise UsageError("--layers times the forward; drop --train or --layers")
    settings = TimingSettings(warmup_calls=warmup, warmup_seconds=warmup_time, duration=duration, reps=reps,
                              amp=amp, train=train, optimizer=optimizer)
    if sweep_text:
        report = _bench_sweep(source, settings, sweep_text, batch, options)
    else:
        options["tolerance"] = options.pop("batch_tolerance")
        bench_options = BenchOptions(batch=batch, **{**options, "memory_limit": memory_limit})
        with progress_bar(not quiet and sys.stderr.isatty()) as progress:
            report = run_bench(source, settings, bench_options, progress)
    if limit_from:
        report = replace(report, environment={**report.environment, "memory_limit_from": limit_from})
    emit(bench_document(report), out)
    if plot:
        save_plot(report, plot)


def _memory_limit(source: ModelSource, find_batch: bool, max_batch: int | None, memory_limit: int | None
                  ) -> tuple[int | None, str | None]:
    """The memory limit of a CPU batch search and where it comes from: --memory-limit, or else (with no
    --max-batch either) the memory available on this machine."""
    if memory_limit is not None:
        return memory_limit, "--memory-limit"
    if not (find_batch and source.device == Device.CPU and max_batch is None):
        return None, None
    from modelprof.timing.measure import available_memory_bytes

    available = available_memory_bytes()
    if available is None:
        raise UsageError("--find-batch on cpu needs --memory-limit (e.g. 4GiB) or --max-batch here: this "
                         "system does not say how much memory is available")
    return available, "the memory available on this machine"


def _bench_sweep(source: ModelSource, settings: Any, sweep_text: str, batch: int, options: dict[str, Any]) -> Any:
    """``bench --sweep``: one timing at each value of the batch or of a named input size."""
    if options["find_batch"] or options["layers"] or options["compile_model"]:
        raise UsageError("--sweep times each value once; drop --find-batch, --layers and --compile")
    from modelprof.planning.sweep import bench_sweep, parse_sweep

    dim, values = parse_sweep(sweep_text)
    return bench_sweep(source, settings, dim, values, batch, options["threads"])


def _bench_generation(source: ModelSource, out: OutputOptions, batch: int, prompt_len: int, new_tokens: int,
                      reps: int | None, options: dict[str, Any]) -> None:
    """``bench --generate``: time to first token and per-token latency."""
    if any(options[k] for k in ("find_batch", "layers", "compile_model")):
        raise UsageError("--generate times one batch of generations; drop --find-batch, --layers and --compile")
    from modelprof.reports.views import bench_document
    from modelprof.timing.bench import run_generate_bench

    emit(bench_document(run_generate_bench(source, batch, prompt_len, new_tokens, reps or 3, options["threads"])),
         out)


def _check_bench_options(source: ModelSource, find_batch: bool, memory_limit: int | None,
                         compile_model: bool) -> None:
    """Refuse option combinations that cannot work, before anything is built."""
    if source.device == Device.META:
        raise UsageError("bench --device meta: nothing really runs on meta, so there is nothing to time; "
                         "use --device cpu or cuda (stats --device meta counts without running)")
    if memory_limit is not None and source.device != Device.CPU:
        raise UsageError("--memory-limit applies to --device cpu; on cuda the GPU's own memory is the limit")
    if compile_model and find_batch:
        raise UsageError("--compile with --find-batch is not supported: every batch size would recompile; "
                         "find the batch first, then time it with --compile --batch N")


@cli.command()
@model_command
@click.option("--memory", "memory_text", required=True, metavar="SIZE|DEVICE",
              help="The memory to fit in: 80GiB, 24GB, or a device name (H100, A100-40GB, L4, RTX4090 ...).")
@click.option("--train", is_flag=True, help="Fit a training step (forward, backward, optimizer) instead of a forward.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="adamw",
              show_default=True, help="With --train: the optimizer whose state counts.")
@amp_option
@click.option("--seq", type=click.IntRange(min=1), help="With a named input size (input_ids=SEQ:int64): its value for "
              "the batch fit; the longest SEQ at --batch is fitted too.")
@generation_options("Fit generation (prefill of --prompt-len, --new-tokens decode steps, the KV cache): the "
                    "largest batch, and the longest prompt at --batch.")
def fit(source: ModelSource, out: OutputOptions, batch: int, memory_text: str, train: bool, optimizer: str,
        amp: bool, seq: int | None, generate: bool, prompt_len: int | None, new_tokens: int) -> None:
    """The largest batch of TARGET whose peak memory fits --memory, predicted from shape-only (meta) runs at batch
    2, 4 and 8 (memory = fixed + per-sample x batch, phase by phase), then checked at the answer. Nothing is
    allocated. With a named input size (SEQ) or --generate, also the longest sequence at --batch."""
    from modelprof.counting.train import Optimizer
    from modelprof.planning.fit import device_memory, fit_batch, fit_length
    from modelprof.reports.views import fit_document

    known = device_memory(memory_text)
    if known is not None:
        memory, label = known, f"{memory_text}'s memory"
    else:
        try:
            memory, label = units.parse_bytes(memory_text), ""
        except ValueError:
            raise UsageError(f"--memory: '{memory_text}' is neither a size (80GiB, 24GB) nor a known device "
                             "(H100, A100, A100-40GB, H200, L4, L40S, RTX4090, T4 ...)") from None
    step = Optimizer(optimizer)
    names = sorted(source.inputs.names())
    if generate and amp:
        raise UsageError("--amp fits a forward or a training step under autocast; drop --generate or --amp")
    if generate:
        fits = [fit_batch(source, memory, memory_source=label, generation=(prompt_len, new_tokens)),
                fit_length(source, memory, "PROMPT", batch, memory_source=label, new_tokens=new_tokens)]
    elif names:
        fits = [fit_length(source, memory, names[0], batch, train, step, label, amp=amp)]
        if seq is not None:
            bound = replace(source, inputs=source.inputs.bind(names[0], seq))
            fits.insert(0, fit_batch(bound, memory, train, step, label, amp=amp))
    else:
        if seq is not None:
            raise UsageError("--seq gives a named input size a value; name one, e.g. --input input_ids=SEQ:int64")
        fits = [fit_batch(source, memory, train, step, label, amp=amp)]
    emit(fit_document(fits), out)


@cli.command()
@click.option("--device", type=click.Choice([Device.CPU.value, Device.CUDA.value]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice([d.value for d in MODEL_DTYPES]), default="float32", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Time spent on each of the two measurements.")
@click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="table",
              show_default=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="- is stdout.")
def calibrate(device: str, dtype: str, threads: int | None, seconds: float, fmt: str, output: str) -> None:
    """Measure the device's peak MAdd/s (a large matmul) and memory bandwidth (a large copy), and cache them for
    bench --layers, per device, dtype and thread count. On a known GPU the datasheet's peaks are shown beside."""
    out = output_options(fmt, output)
    import torch

    from modelprof.reports.views import calibration_document
    from modelprof.timing.calibrate import measure_peaks, save

    if device == Device.CUDA and not torch.cuda.is_available():
        raise UsageError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")
    if threads:
        torch.set_num_threads(threads)
    peaks = measure_peaks(device, dtype, seconds)
    try:
        peaks = replace(peaks, source=f"measured now, cached in {save(peaks, device, dtype)}")
    except OSError as exc:
        peaks = replace(peaks, source=f"measured now, not cached ({exc.strerror})")
    cpu_threads = torch.get_num_threads() if device == Device.CPU else None
    emit(calibration_document(peaks, device, dtype, cpu_threads), out)


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``--max-<metric>`` option per budget in :data:`modelprof.reports.budgets.LIMITS`."""
    for limit in reversed(LIMITS.values()):
        command = click.option(limit.option, limit.key, metavar="N", help=limit.help)(command)
    return command


@cli.command()
@model_command
@limit_options
@click.option("--budget", "budget_file", metavar="FILE.toml",
              help="Limits from a TOML file (top level or [tool.modelprof]); default: ./pyproject.toml's "
                   "[tool.modelprof]. Options given on the command line win.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              metavar="SECONDS", help="Timing budget for --max-latency-ms and --min-mfu.")
@click.option("--train", is_flag=True, help="Count a training step (AdamW, loss = sum of outputs), so that "
              "--max-bwd-flops, --max-step-flops and --max-peak-memory measure it.")
@amp_option
def check(source: ModelSource, out: OutputOptions, batch: int, budget_file: str | None, duration: float,
          train: bool, amp: bool, **limit_values: str | None) -> None:
    """Check TARGET against budgets: one line per limit, exit 0 when all hold, 1 when any is exceeded.

    Counts take K/M/G/T suffixes, sizes KB/MB/GB or KiB/MiB/GiB. Only stats run unless a latency limit is given.
    """
    from modelprof.planning.check import run_check
    from modelprof.reports.views import check_document

    budget = load_budget(budget_file)
    budget.update({k: v for k, v in limit_values.items() if v is not None})
    if not budget:
        raise UsageError(f"no limits given; pass {'/'.join(limit.option for limit in LIMITS.values())} "
                         "or a --budget file")
    limits = {key: parse_limit(key, value) for key, value in budget.items()}
    result = run_check(source, limits, batch, duration, train, amp)
    emit(check_document(result), out)
    if not result.passed:
        raise ModelprofError(f"{result.failed} of {len(result.limits)} limit(s) exceeded")


@cli.command()
@click.argument("old_path", metavar="OLD.json")
@click.argument("new_path", metavar="NEW.json")
@click.option("--fail-over", metavar="PERCENT", help="Exit 1 when any total (or median latency) grows by more "
              "than this: 5%.")
@click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="table",
              show_default=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="- is stdout.")
def compare(old_path: str, new_path: str, fail_over: str | None, fmt: str, output: str) -> None:
    """Per-layer and total differences between two saved JSON reports (stats, or bench).

    Layers added or removed are listed; with --fail-over the exit code is 1 when a total grows too much.
    """
    from modelprof.reports.compare import compare_reports, load_report, parse_percent
    from modelprof.reports.views import comparison_document

    out = output_options(fmt, output)
    threshold = parse_percent(fail_over) if fail_over is not None else None
    comparison = compare_reports(load_report(old_path), load_report(new_path))
    emit(comparison_document(comparison), out)
    if threshold is not None:
        grown = comparison.grown_over(threshold)
        if grown:
            what = ", ".join(f"{d.metric} {'+' if d.percent is None else f'{d.percent:+.1f} %'}" for d in grown)
            raise ModelprofError(f"--fail-over {fail_over}: {what}")


def error_line(exc: ModelprofError) -> str:
    """A library error in the command line's words: the flag it is about, the message, the fix."""
    prefix = f"--{exc.option.replace('_', '-')}: " if exc.option else ""
    hint = f"; {HINTS[exc.hint]}" if exc.hint else ""
    return f"{prefix}{one_line(exc)}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; report any failure in one line with exit code 2 (usage) or 1 (model)."""
    argv = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        code = cli.main(args=argv, prog_name="modelprof", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("modelprof: aborted", err=True)
        code = 130
    except click.ClickException as exc:
        hint = f" (see 'modelprof {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) and exc.ctx.parent \
            else " (see 'modelprof --help')"
        click.echo(f"modelprof: error: {exc.format_message()}{hint}", err=True)
        code = exc.exit_code
    except ModelprofError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"modelprof: error: {error_line(exc)}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("modelprof: interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug of ours: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"modelprof: internal error: {type(exc).__name__}: {one_line(exc)} (rerun with --debug for the "
                   "traceback and report it)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
