"""Timing statistics on fixed samples, the batch search's contract, and `modelprof bench` end to end on CPU,
including real out-of-memory failures under --memory-limit."""

import json
import math

import numpy as np
import pytest
import torch
from fixtures import WORKED

from modelprof.reports.bench import BatchResult, BenchReport, LatencyStats, best_batch
from modelprof.timing.measure import CudaClock, find_max_batch

FAST = ["--warmup", "1", "--warmup-time", "0"]


def test_latency_statistics_by_hand():
    samples = [s / 1e3 for s in (3, 1, 2, 10, 4, 5, 6, 7, 8, 9)]  # 1..10 ms, unsorted
    stats = LatencyStats.from_samples(samples)
    assert stats.samples == tuple(samples)  # raw samples kept in call order
    assert stats.mean == pytest.approx(5.5e-3)
    # sample variance: sum((x - 5.5)^2) / 9 = 82.5 / 9
    assert stats.stddev == pytest.approx(math.sqrt(82.5 / 9) / 1e3)
    assert stats.median == pytest.approx(5.5e-3)
    # linear interpolation at q*(n-1): p90 at 8.1 -> 9.1; p99 at 8.91 -> 9.91; IQR 7.75 - 3.25 = 4.5
    assert stats.p90 == pytest.approx(9.1e-3) and stats.p99 == pytest.approx(9.91e-3)
    assert stats.iqr == pytest.approx(4.5e-3)
    assert (stats.min, stats.max) == (1e-3, 10e-3)
    # the same as NumPy's percentiles, an independent reference
    for q, value in ((50, stats.median), (90, stats.p90), (99, stats.p99)):
        assert value == pytest.approx(np.percentile(samples, q))
    assert stats.noisy  # IQR 4.5 ms is 82 % of the 5.5 ms median


def test_stable_and_single_sample():
    assert not LatencyStats.from_samples([1.00, 1.01, 1.02, 0.99, 1.0]).noisy  # IQR 0.02 / 1.0 = 2 %
    one = LatencyStats.from_samples([0.004])
    assert (one.stddev, one.median, one.p99) == (0.0, 0.004, 0.004)


def result(batch, throughput):
    return BatchResult(batch, LatencyStats.from_samples([batch / throughput]), throughput, 0)


def test_best_batch_is_smallest_within_95_percent():
    sweep = [result(1, 100), result(2, 180), result(4, 195), result(8, 200), result(16, 199)]
    assert best_batch(sweep) == 4  # 195 >= 0.95 * 200 = 190; 180 is not


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100, 1000, 1537, 160_000])
def test_search_finds_exact_limit_with_few_probes(limit):
    tried = []

    def probe(batch):
        tried.append(batch)
        return result(batch, 1.0) if batch <= limit else None

    found = find_max_batch(probe, tolerance=0.0)
    assert found.max_batch == limit
    assert found.probes == len(tried) <= 2 * math.log2(limit) + 3
    assert dict(found.outcomes)[limit] is not None  # the answer was run successfully
    # the reference's +100 loop would need limit/100 + 1 passes
    assert limit < 10_000 or found.probes < limit / 100


def test_search_tolerance_cap_and_nothing_fits():
    found = find_max_batch(lambda b: result(b, 1.0) if b <= 10_000 else None, tolerance=0.01)
    assert 10_000 - found.max_batch <= 100 and found.max_batch <= 10_000
    capped = find_max_batch(lambda b: result(b, 1.0), max_batch=48)
    assert capped.max_batch == 48 and [b for b, _ in capped.outcomes][-1] == 48
    none = find_max_batch(lambda b: None)
    assert none.max_batch is None and none.probes == 1


def test_bench_json_keeps_samples_and_environment(run):
    code, out, err = run("bench", WORKED, "--shape", "3,32,32", "--batch", "2", "--reps", "4",
                         "--threads", "1", *FAST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    (row,) = report["sweep"]
    assert row["batch"] == 2 and len(row["samples_ms"]) == 4
    assert row["mean_ms"] == pytest.approx(sum(row["samples_ms"]) / 4)
    assert row["throughput"] == pytest.approx(2 / (row["mean_ms"] / 1e3))
    assert row["peak_memory"] > 0 and row["pipelined_throughput"] is None
    env = report["environment"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert report["max_batch"] is None and report["probes"] is None
    BenchReport.from_dict(report)  # a saved report loads back


def test_bench_formats_and_options(run):
    code, out, err = run("bench", WORKED, "--shape", "3,32,32", "--reps", "3", *FAST,
                         "--channels-last", "--amp")
    assert code == 0, err
    assert "Mean [ms]" in out and "Throughput [samples/s]" in out and "amp" in out and "channels-last" in out
    code, out, _ = run("bench", WORKED, "--shape", "3,32,32", "--reps", "3", *FAST, "--format", "csv")
    assert out.splitlines()[0].startswith("Batch,Calls,Mean [ms]")
    code, out, _ = run("bench", WORKED, "--shape", "3,32,32", "--reps", "3", *FAST, "--format", "markdown")
    assert "| Batch |" in out


def test_find_batch_under_real_memory_limit(run):
    # Hungry makes 16 MiB per sample; under a 256 MiB cap the search must hit real allocation failures in its
    # child processes, survive them, and return a batch it ran
    code, out, err = run("bench", "fixtures:Hungry", "--shape", "1024", "--find-batch", "--memory-limit",
                         "256MiB", "--reps", "2", *FAST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    ran = {r["batch"] for r in report["sweep"]}
    assert report["max_batch"] in ran and report["failed_batches"]
    # about 256 MiB / 16 MiB = 16 samples fit; the runtime's own reservations move the edge by a sample or so
    assert 8 <= report["max_batch"] <= 20
    above = min(b for b in report["failed_batches"] if b > report["max_batch"])
    assert above - report["max_batch"] == 1  # bisected to the exact boundary (1 % of a small batch is < 1)
    assert report["probes"] == len(ran) + len(report["failed_batches"])
    assert report["probes"] <= 2 * math.log2(report["max_batch"] + 1) + 3
    assert report["best_batch"] in ran


def test_find_batch_of_a_training_step_against_fit(run):
    # a training step of HungryTrainable holds two 16 MiB tensors per sample (the repeat, saved for the scale's
    # gradient, and the product); under a 256 MiB cap its child processes must run real training steps and land
    # near what fit predicts for the tensors alone (the cap counts address space grown, so memory the runtime had
    # reserved already moves the edge by a sample or so, either way)
    code, out, err = run("fit", "fixtures:HungryTrainable", "--shape", "1024", "--memory", "256MiB", "--train",
                         "--format", "json")
    assert code == 0, err
    predicted = json.loads(out)["fits"][0]["max_batch"]
    assert predicted == 7  # 256 MiB / 32 MiB = 8, less the parameter, gradient, Adam state and sums: 7
    code, out, err = run("bench", "fixtures:HungryTrainable", "--shape", "1024", "--train", "--find-batch",
                         "--memory-limit", "256MiB", "--reps", "1", *FAST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert predicted - 3 <= report["max_batch"] <= predicted + 2 and report["failed_batches"]


def test_find_batch_in_process_with_max_batch(run):
    code, out, err = run("bench", WORKED, "--shape", "3,16,16", "--find-batch", "--max-batch", "8",
                         "--reps", "2", *FAST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["max_batch"] == 8 and [r["batch"] for r in report["sweep"]] == [1, 2, 4, 8]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--memory-limit", "lots"], "not a size"),
        (["--device", "cuda", "--memory-limit", "1GiB"], "applies to --device cpu"),
        (["--compile", "--find-batch", "--max-batch", "4"], "not supported"),
        (["--reps", "0"], "reps"),
        (["--device", "meta"], "nothing to time"),
        (["--plot", "/no/such/dir/p.png"], "does not exist"),
    ],
)
def test_bench_bad_input(run, argv, needle):
    code, out, err = run("bench", WORKED, "--shape", "3,8,8", *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and out == ""


def test_bench_forward_failure_names_the_problem(run):
    code, _, err = run("bench", WORKED, "--shape", "4,8,8", "--reps", "1", *FAST)
    assert code == 1 and "failed at batch 1" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_event_order_and_units():
    # elapsed_time is start.elapsed_time(end) in milliseconds: a 50 ms sleep on the stream reads as ~0.05 s
    clock = CudaClock()
    clock.begin()
    torch.cuda._sleep(int(50e6))  # cycles; about 25-50 ms on current GPUs
    seconds = clock.end()
    assert 0.001 < seconds < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bench_reports_pipelined_throughput(run):
    code, out, err = run("bench", WORKED, "--shape", "3,64,64", "--device", "cuda", "--reps", "5", *FAST,
                         "--format", "json")
    assert code == 0, err
    row = json.loads(out)["sweep"][0]
    assert row["pipelined_throughput"] > 0 and row["peak_memory"] > 0


def test_plot_saves_png_or_says_how_to_install(run, tmp_path, monkeypatch):
    target = tmp_path / "t.png"
    argv = ["bench", WORKED, "--shape", "3,8,8", "--find-batch", "--max-batch", "4", "--reps", "2", *FAST,
            "--plot", target]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        code, _, err = run(*argv)
        assert code == 2 and "pip install 'modelprof[plot]'" in err
        return
    code, _, err = run(*argv)
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    code, _, err = run(*argv)
    assert code == 2 and "pip install 'modelprof[plot]'" in err
