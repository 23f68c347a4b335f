"""``bench --gpus N``: the sharded step run for real, by N processes of one job, each timed.

Each rank is a child process (``python -m modelprof.timing.rank``) that joins a process group (gloo on CPU, NCCL on
CUDA: one GPU per rank), builds the model and its inputs, shards it exactly as ``stats --gpus N`` does (the same
prepare transform, now on the real group) and times its training step or forward as ``bench`` times one device:
warm-up, then every call alone; peak memory is the process's peak resident memory on CPU and
``max_memory_allocated`` on CUDA. The parent waits for all of them: a rank that fails, runs out of memory or does
not finish in time ends the job, the others are killed, and the error names the rank. Nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from modelprof.errors import ModelError
from modelprof.loading.source import ModelSource
from modelprof.reports.bench import BatchResult, BenchReport
from modelprof.reports.stats import ParallelLayout
from modelprof.timing.measure import TimingSettings
from modelprof.workload import Workload

#: Seconds a rank may take beyond the measurement itself (start-up, building and sharding the model, warm-up).
SETUP_SECONDS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(source: ModelSource, workload: Workload, settings: TimingSettings, batch: int,
              threads: int | None = None, report: BenchReport | None = None) -> BenchReport:
    """Time ``workload`` as every rank of its job (``workload.parallel``), each in its own process; ``report`` is
    the bench report to fill (its ``sweep`` gets rank 0's result, ``ranks`` every rank's)."""
    p = workload.parallel
    cuda = source.device.value == "cuda"
    per_rank_threads = threads or max(1, (os.cpu_count() or 1) // p.gpus)
    request = {"source": source.to_dict(), "workload": workload.to_dict(), "batch": batch,
               "settings": asdict(settings), "threads": per_rank_threads, "path": sys.path}
    port = _free_port()
    deadline = time.monotonic() + SETUP_SECONDS + 3 * (settings.warmup_seconds + settings.duration)
    with tempfile.TemporaryDirectory(prefix="modelprof-ranks-") as scratch:
        folder = Path(scratch)
        (folder / "request.json").write_text(json.dumps(request))
        procs: list[subprocess.Popen] = []
        try:
            for rank in range(p.gpus):
                env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(p.gpus), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": str(per_rank_threads)}
                with open(folder / f"{rank}.out", "w") as out, open(folder / f"{rank}.err", "w") as err:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "modelprof.timing.rank", str(folder / "request.json")],
                        stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env))
            _wait(procs, folder, deadline)
        finally:
            for proc in procs:  # every exit path: nothing is left running
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        results = [BatchResult.from_dict(_answer(folder, rank)["result"]) for rank in range(p.gpus)]
    base = report or BenchReport(model=source.target, inputs=(), device=source.device.value, dtype="",
                                 environment={}, sweep=())
    layout = ParallelLayout.of(replace(p, rank=0))
    environment = {**base.environment, "backend": "nccl" if cuda else "gloo", "threads": per_rank_threads}
    return replace(base, sweep=(results[0],), ranks=tuple(results), parallel=layout, environment=environment)


def _wait(procs: list[subprocess.Popen], folder: Path, deadline: float) -> None:
    """Until every rank has exited 0; the first that fails (or the deadline) ends the job with that rank's error."""
    while True:
        codes = [proc.poll() for proc in procs]
        if any(code not in (None, 0) for code in codes):
            # the ranks waiting on a failed one fail in turn ("connection closed by peer"): give them a moment,
            # then name the rank whose own error started it
            settle = time.monotonic() + 3
            while time.monotonic() < settle and any(proc.poll() is None for proc in procs):
                time.sleep(0.05)
            codes = [proc.poll() for proc in procs]
            errors = {rank: _error(folder, rank, code) for rank, code in enumerate(codes) if code not in (None, 0)}
            first = next((rank for rank, error in errors.items() if not any(m in error for m in _PEER_FAILED)),
                         next(iter(errors)))
            raise ModelError(f"rank {first} of {len(procs)} failed: {errors[first]}")
        if all(code == 0 for code in codes):
            return
        if time.monotonic() > deadline:
            waiting = [rank for rank, code in enumerate(codes) if code is None]
            raise ModelError(f"rank {waiting[0]} of {len(procs)} did not finish in time (still running: "
                             f"{', '.join(map(str, waiting))}); the others may be waiting for it in a collective")
        time.sleep(0.05)


#: What a rank says when another rank of its job failed, not itself.
_PEER_FAILED = ("Connection closed by peer", "Connection reset by peer", "remote worker", "Broken pipe",
                "NCCL communicator was aborted")


def _answer(folder: Path, rank: int) -> dict:
    lines = (folder / f"{rank}.out").read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def _error(folder: Path, rank: int, code: int) -> str:
    """What a failed rank said: its answer's error, else the last line of its stderr, else its exit code."""
    answer = {}
    with contextlib.suppress(OSError, ValueError):
        answer = _answer(folder, rank)
    if answer.get("oom"):
        return "out of memory"
    if answer.get("error"):
        return answer["error"]
    lines = [line for line in (folder / f"{rank}.err").read_text().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit code {code}" + (" (killed for memory?)" if code < 0 else "")


def rank_in_child(request: dict) -> dict:
    """One rank's side: join the job's process group, build, shard (in ``measure``'s prepare stage) and time."""
    import datetime

    import torch
    import torch.distributed as dist

    from modelprof.timing.measure import is_out_of_memory, measure

    torch.set_num_threads(int(request["threads"]))
    source = ModelSource.from_dict(request["source"])
    workload = Workload.from_dict(request["workload"])
    workload = replace(workload, parallel=replace(workload.parallel, rank=int(os.environ["RANK"])))
    cuda = source.device.value == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=SETUP_SECONDS))
    try:
        model = source.build_model()
        args, kwargs = source.build_inputs(request["batch"])
        device = f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu"
        result = measure(model, args, kwargs, request["batch"], device, TimingSettings(**request["settings"]),
                         workload=workload, collectives=True)
    except Exception as exc:
        if is_out_of_memory(exc):
            return {"oom": True}
        from modelprof.errors import one_line

        return {"error": f"{type(exc).__name__}: {one_line(exc)}"}
    return {"result": result.to_dict()}
