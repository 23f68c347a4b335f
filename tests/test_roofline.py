"""Per-layer time and the roofline: the arithmetic of intensity, bound and efficiency on fixed numbers, the
attribution of self time, rows adding up through the CLI, calibrate's cache, check --min-mfu and compare."""

import json

import pytest
from fixtures import WORKED

import modelprof.timing.layertime as layertime
from modelprof.reports.bench import LayerProfile, LayerTiming
from modelprof.timing import roofline
from modelprof.timing.calibrate import cache_key, load_cached
from modelprof.timing.roofline import Peaks

FAST = ["--reps", "3", "--warmup", "1", "--warmup-time", "0", "--quiet"]
PEAKS = Peaks(flops=100e9, bandwidth=10e9)  # ridge at 100e9 / 10e9 = 10 MAdd per byte


def test_roofline_arithmetic_by_hand():
    assert PEAKS.ridge == 10
    # compute-bound: 1e9 MAdd over 1e7 bytes = 100 MAdd/B >= 10; roof = max(1e9/1e11, 1e7/1e10) = 0.01 s
    assert roofline.intensity(1e9, 1e7) == 100
    assert roofline.attainable_seconds(1e9, 1e7, PEAKS) == pytest.approx(0.01)
    assert roofline.bound(1e9, 1e7, PEAKS) == "compute"
    assert roofline.efficiency(1e9, 1e7, 0.02, PEAKS) == pytest.approx(0.5)  # 0.01 / 0.02
    assert roofline.verdict(1e9, 1e7, 0.02, PEAKS) == "compute-bound, 50 % of roof"
    # memory-bound: 1e6 MAdd over 1e8 bytes = 0.01 MAdd/B; roof = max(1e-5, 1e8/1e10 = 0.01) = 0.01 s
    assert roofline.bound(1e6, 1e8, PEAKS) == "memory"
    assert roofline.verdict(1e6, 1e8, 0.04, PEAKS) == "memory-bound, 25 % of roof"
    # exactly at the ridge counts as compute-bound: 1e8 MAdd over 1e7 bytes = 10
    assert roofline.bound(1e8, 1e7, PEAKS) == "compute"
    # MFU: 2e9 MAdd in 0.1 s = 2e10 MAdd/s over 1e11 = 0.2
    assert roofline.mfu(2e9, 0.1, PEAKS) == pytest.approx(0.2)


def test_layer_profile_totals_by_hand():
    rows = (LayerTiming("conv", "Conv2d", 1, (0.020, 0.030, 0.025), madd=1_000_000_000, nbytes=10_000_000),
            LayerTiming("relu", "ReLU", 1, (0.010, 0.010, 0.040), madd=1_000_000, nbytes=100_000_000),
            LayerTiming("(unattributed)", "Python", 0, (0.001, 0.001, 0.001)))
    profile = LayerProfile(rows, forward_median=0.040, peaks=PEAKS)
    assert [r.median for r in rows] == [0.025, 0.010, 0.001]
    assert profile.rows_total == pytest.approx(0.036)
    assert profile.roof_seconds == pytest.approx(0.01 + 0.01)  # conv at its compute roof, relu at its memory roof
    assert profile.mfu == pytest.approx(1_001_000_000 / 0.040 / 100e9)
    conv = profile.to_dict()["rows"][0]
    assert conv["share"] == pytest.approx(0.025 / 0.036) and conv["bound"] == "compute"
    assert conv["efficiency"] == pytest.approx(0.01 / 0.025) and conv["achieved_flops"] == pytest.approx(4e10)
    assert LayerProfile.from_dict(json.loads(json.dumps(profile.to_dict()))).rows == rows


def test_self_time_subtracts_the_modules_called(monkeypatch):
    # root starts at 0, calls child from 1 to 4 and child again from 5 to 6, ends at 10:
    # child's self time 3 + 1 = 4, root's 10 - 4 = 6
    ticks = iter([0.0, 1.0, 4.0, 5.0, 6.0, 10.0])
    monkeypatch.setattr(layertime.time, "perf_counter", lambda: next(ticks))
    import torch

    model = torch.nn.Sequential(torch.nn.ReLU())
    clock = layertime.LayerClock(model, torch.device("cpu"))
    clock._pre(model, ())
    clock._pre(model[0], ())
    clock._post(model[0], (), None)
    clock._pre(model[0], ())
    clock._post(model[0], (), None)
    clock._post(model, (), None)
    assert clock.self_times() == {"(root)": 6.0, "0": 4.0}
    assert clock.calls == []


def test_bench_layers_rows_add_up_and_carry_the_counts(run):
    code, out, err = run("bench", WORKED, "--shape", "3,500,500", "--layers", "--peak-flops", "100G",
                         "--peak-bandwidth", "10GB", *FAST, "--format", "json")
    assert code == 0, err
    profile = json.loads(out)["layers"]
    rows = {r["name"]: r for r in profile["rows"]}
    assert list(rows)[:3] == ["conv1", "bn1", "relu1"]
    # docs/counting.md: conv1 MAdd 36,625,000; bytes 3,001,176 read + 500,000 written
    assert rows["conv1"]["madd"] == 36_625_000 and rows["conv1"]["bytes"] == 3_501_176
    assert rows["conv1"]["intensity"] == pytest.approx(36_625_000 / 3_501_176)
    # roof of conv1: max(36,625,000 / 1e11, 3,501,176 / 1e10) = 0.00036625 s
    assert rows["conv1"]["attainable_ms"] == pytest.approx(0.36625)
    assert rows["conv1"]["bound"] == "compute"  # 10.46 MAdd/B >= ridge 10
    assert profile["peaks"]["source"] == "given" and profile["peaks"]["ridge"] == 10
    # every forward's row times sum to the hooked forward: the rows' medians add up to rows_total
    assert sum(r["median_ms"] for r in profile["rows"]) == pytest.approx(profile["rows_total_ms"])
    assert sum(r["share"] for r in profile["rows"]) == pytest.approx(1.0)
    code, out, err = run("bench", WORKED, "--shape", "3,64,64", "--layers", "--peak-flops", "100G",
                         "--peak-bandwidth", "10GB", *FAST)
    assert code == 0 and "Time by layer" in out and "Slowest layers:" in out and "-bound" in out


def test_bench_layers_at_depth_and_compare(run, tmp_path):
    target = "fixtures:resnet18"
    for name in ("a", "b"):
        code, _, err = run("bench", target, "--shape", "3,32,32", "--layers", "--depth", "1", "--peak-flops", "1T",
                           "--peak-bandwidth", "100GB", *FAST, "--format", "json", "-o", tmp_path / f"{name}.json")
        assert code == 0, err
    rows = [r["name"] for r in json.loads((tmp_path / "a.json").read_text())["layers"]["rows"]]
    assert rows[:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"] and "layer1.0.conv1" not in rows
    code, out, err = run("compare", tmp_path / "a.json", tmp_path / "b.json", "--format", "json")
    assert code == 0, err
    layers = {x["name"]: x for x in json.loads(out)["layers"]}
    assert layers["layer1"]["deltas"][0]["metric"] == "layer_time_s"


def test_bench_layers_refuses_find_batch(run):
    code, out, err = run("bench", WORKED, "--shape", "3,8,8", "--layers", "--find-batch", "--max-batch", "4")
    assert code == 2 and out == "" and "--layers times one batch" in err


def fake_cache(monkeypatch, tmp_path, flops):
    monkeypatch.setenv("MODELPROF_CACHE", str(tmp_path))
    (tmp_path / "peaks.json").write_text(json.dumps({cache_key("cpu", "float32"): {"flops": flops,
                                                                                  "bandwidth": 1e10}}))


def test_check_min_mfu_uses_the_calibrated_peak(run, monkeypatch, tmp_path):
    # a peak of 1 MAdd/s: any real forward exceeds it, MFU far above 100 %; a peak of 1e20: MFU near 0
    fake_cache(monkeypatch, tmp_path, 1.0)
    code, out, err = run("check", WORKED, "--shape", "3,16,16", "--min-mfu", "100%", "--duration", "0.05")
    assert code == 0 and out.startswith("pass  MFU"), err
    fake_cache(monkeypatch, tmp_path, 1e20)
    code, out, err = run("check", WORKED, "--shape", "3,16,16", "--min-mfu", "1%", "--duration", "0.05")
    assert code == 1 and out.startswith("FAIL  MFU") and "(limit 1.0 %)" in out
    code, out, err = run("check", WORKED, "--shape", "3,16,16", "--min-mfu", "150%")
    assert code == 2 and "between 0 and 100 %" in err


def test_calibrate_measures_and_caches(run, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPROF_CACHE", str(tmp_path))
    monkeypatch.setattr("modelprof.timing.calibrate.MATMUL_SIZE", {"cpu": 128})  # small, so the test is quick
    monkeypatch.setattr("modelprof.timing.calibrate.COPY_BYTES", {"cpu": 4 * 2**20})
    code, out, err = run("calibrate", "--seconds", "0.05", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "calibrate" and data["peaks"]["madd_per_s"] > 0 and data["peaks"]["bandwidth"] > 0
    cached = load_cached("cpu", "float32")
    assert cached.flops == data["peaks"]["madd_per_s"] and str(tmp_path) in cached.source


def test_datasheet_matches_gpu_names():
    assert roofline.datasheet("NVIDIA H100 80GB HBM3", "bfloat16") == (989e12, 3.35e12)
    assert roofline.datasheet("NVIDIA H100 PCIe", "float32") == (51e12, 2.0e12)
    assert roofline.datasheet("NVIDIA L40S", "float32") == (91.6e12, 864e9)  # not L4
    assert roofline.datasheet("NVIDIA L4", "float16") == (121e12, 300e9)
    assert roofline.datasheet("NVIDIA A100-SXM4-40GB", "float32") == (19.5e12, 1.555e12)
    assert roofline.datasheet("AMD EPYC", "float32") == (None, None)


def test_roofline_plot(run, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "roofline.png"
    code, _, err = run("bench", WORKED, "--shape", "3,64,64", "--layers", "--peak-flops", "100G",
                       "--peak-bandwidth", "10GB", *FAST, "--plot", target)
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
