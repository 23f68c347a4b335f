"""``modelprof fit``: the largest batch (or sequence) whose peak memory fits, predicted on meta."""

from __future__ import annotations

import click

from modelprof.cli.common import emit, model_command
from modelprof.errors import UsageError
from modelprof.loading.source import ModelSource, OutputOptions
from modelprof.workload import Workload


@click.command()
@model_command(generate="Fit generation (prefill of --prompt-len, --new-tokens decode steps, the KV cache): the "
               "largest batch, and the longest prompt at --batch.")
@click.option("--memory", "memory_text", required=True, metavar="SIZE|DEVICE",
              help="The memory to fit in: 80GiB, 24GB, or a device name (H100, A100-40GB, L4, RTX4090 ...).")
@click.option("--seq", type=click.IntRange(min=1), help="With a named input size (input_ids=SEQ:int64): its value for "
              "the batch fit; the longest SEQ at --batch is fitted too.")
def fit(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, memory_text: str,
        seq: int | None) -> None:
    """The largest batch of TARGET whose peak memory fits --memory, predicted from shape-only (meta) runs at batch
    2, 4 and 8 (memory = fixed + per-sample x batch, phase by phase), then checked at the answer. Nothing is
    allocated. With a named input size (SEQ) or --generate, also the longest sequence at --batch.

    Sharded (--gpus N with --fsdp/--zero/--ddp/--tp): the largest batch per GPU of that job, rank 0's share. With
    --fsdp or --zero 2 and no --gpus: the fewest GPUs (the TP degree times 1, 2, 4 ... 4096) on which --batch per
    GPU fits. With --pp N: the largest microbatch on which every pipeline stage fits, or without --gpus the fewest
    GPUs (TP × PP × 1, 2, 4 ...) on which every stage fits --batch per data-parallel rank."""
    from modelprof.planning.fit import parse_memory, run_fit
    from modelprof.reports.catalog import document

    p = workload.parallel
    fewest = p.data is not None and click.get_current_context().params.get("gpus") is None
    if fewest and seq is not None:
        raise UsageError("fit --fsdp/--zero without --gpus finds the fewest GPUs at --batch (and the input as "
                         "given); drop --seq, or give --gpus N for the largest batch per GPU")
    if p.sharded and workload.generation is not None:
        raise UsageError("fit shards a forward or a training step; drop --generate")
    memory, label = parse_memory(memory_text)
    emit(document(run_fit(source, workload, memory, batch, seq, label, fewest)), out)
