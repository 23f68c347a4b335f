"""The workload value, the prepare stage's transforms, and the rough edges found trying the commands as a new user
(issue "Fast and livable as it grows", part 4). Every expectation is by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from modelprof.errors import UsageError
from modelprof.loading.source import DType
from modelprof.prepare import TRANSFORMS, prepared
from modelprof.workload import Forward, Generation, Optimizer, Precision, Training, Workload

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKED = str(EXAMPLES / "worked.py") + ":Net"


def test_workload_is_a_value_that_round_trips_through_json():
    workload = Workload(Training(Optimizer.SGD), Precision(DType.BFLOAT16, channels_last=True))
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload
    assert workload.kind == "train" and workload.training.optimizer is Optimizer.SGD
    assert Workload().kind == "forward" and Workload(Generation(8, 2)).generation.new_tokens == 2
    assert Workload(Forward()) == Workload()


@pytest.mark.parametrize("workload", [
    dict(step=Generation(8), precision=Precision(amp=True)),
    dict(precision=Precision(DType.FLOAT16, amp=True)),
    dict(precision=Precision(DType.BFLOAT16, amp=True)),
])
def test_workloads_that_cannot_run_are_refused_where_they_are_built(workload):
    with pytest.raises(UsageError, match="--amp"):
        Workload(**workload)


def test_transforms_are_applied_in_their_order_and_undone():
    assert [t.option for t in TRANSFORMS] == ["--train", "--dtype", "--channels-last", "--checkpoint",
                                              "--gpus/--tp/--fsdp/--zero/--ddp", "--amp"]
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = {name: (t, t.dtype, t.stride()) for name, t in model.state_dict(keep_vars=True).items()}
    x = torch.randn(1, 3, 8, 8)
    workload = Workload(precision=Precision(DType.FLOAT64, channels_last=True))
    with prepared(model, (x,), {}, workload) as run:
        assert run.model[0].weight.dtype == torch.float64 and run.args[0].dtype == torch.float64
        assert run.model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert run.args[0].is_contiguous(memory_format=torch.channels_last)
        assert run.model[1].num_batches_tracked.dtype == torch.int64  # integer buffers are not cast
    # the very same tensors are back, in their dtype and layout
    after = {name: (t, t.dtype, t.stride()) for name, t in model.state_dict(keep_vars=True).items()}
    assert all(after[name][0] is before[name][0] and after[name][1:] == before[name][1:] for name in before)


def test_count_with_a_dtype_leaves_the_users_model_as_it_was():
    from modelprof.counting.api import count_costs

    model = nn.Linear(4, 2)
    weight = model.weight
    report = count_costs(model, (torch.randn(3, 4),), workload=Workload(precision=Precision(DType.FLOAT16)))
    # Linear 4 -> 2 on 3 rows: MemRead = input 3*4*2 B + weight 8*2 B + bias 2*2 B = 44 bytes in float16
    assert report.dtype == "float16" and report.total.mem_read == 3 * 4 * 2 + 8 * 2 + 2 * 2
    assert model.weight is weight and weight.dtype == torch.float32


def test_fit_answers_batch_1_when_only_batch_1_fits(run):
    # fixtures.Hungry: N * 16,781,316 bytes at its peak (see test_fit_largest_batch_by_hand); 20 MB holds batch 1
    # (16,781,316) and not batch 2 (33,562,632): before the fix fit said "even batch 2 needs ..." and exited 2
    code, out, err = run("fit", "fixtures:Hungry", "--shape", "1024", "--memory", "20MB", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["fits"][0]["max_batch"] == 1
    code, out, err = run("fit", "fixtures:Hungry", "--shape", "1024", "--memory", "10MB")
    assert code == 2 and "even batch 1 needs 16,781,316 bytes" in err


def test_a_loss_that_is_not_a_function_is_refused_when_read(run, tmp_path):
    (tmp_path / "notaloss.py").write_text("VALUE = 3\n")
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--train", "--loss", f"{tmp_path}/notaloss.py:VALUE")
    assert code == 2 and out == "" and "not a function" in err and "--loss" in err


def test_amp_with_a_16_bit_dtype_is_refused_in_one_line(run):
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--amp", "--dtype", "float16")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--dtype float16" in err


def test_a_calibration_cache_of_the_wrong_shape_is_ignored_and_measured_again(monkeypatch, tmp_path, capsys):
    from modelprof.timing import calibrate

    cache = tmp_path / "peaks.json"
    cache.write_text("[1, 2, 3]")  # valid JSON, not an object of peaks
    monkeypatch.setattr(calibrate, "cache_path", lambda: cache)
    monkeypatch.setattr(calibrate, "MATMUL_SIZE", {"cpu": 64})
    monkeypatch.setattr(calibrate, "COPY_BYTES", {"cpu": 2**20})
    peaks = calibrate.calibrated("cpu", "float32", seconds=0.01)
    assert peaks.flops > 0 and "measured now" in peaks.source
    assert "ignoring it" in capsys.readouterr().err
    assert isinstance(json.loads(cache.read_text()), dict)  # written anew


def test_calibrate_names_madd_per_second_and_still_reads_schema_1():
    from modelprof.timing.roofline import Peaks, upgrade_peaks

    peaks = Peaks(2e12, 1e11, "given")
    assert "madd_per_s" in peaks.to_dict() and "flops" not in peaks.to_dict()
    assert Peaks.from_dict(upgrade_peaks({"flops": 2e12, "bandwidth": 1e11})).flops == 2e12  # a version 1 cache


def test_saved_generate_report_keeps_its_generation(tmp_path):
    from modelprof.reports.stats import DecodeStep, GenerationSummary, Report, TotalCost

    summary = GenerationSummary(batch=1, prompt=4, new_tokens=2, kv_cache=512,
                                steps=(DecodeStep(4, 10, 20, 30), DecodeStep(5, 11, 22, 33)))
    report = Report("m", (), "cpu", "float32", (), TotalCost("total", "M"), generation=summary)
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))).generation == summary


def test_generation_uses_the_current_cache_api():
    import warnings

    pytest.importorskip("transformers")
    from modelprof.counting.generate import count_generation
    from modelprof.loading.hf import import_transformers

    transformers = import_transformers()  # imported as modelprof imports it (torchvision's compiled ops stubbed)

    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)
    model = transformers.LlamaForCausalLM(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count_generation(model, torch.randint(0, 64, (1, 4)), 2)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_a_hub_name_that_cannot_be_had_is_one_line(run, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run("stats", "hf:nobody/no-such-model", "--input", "8:int64")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
