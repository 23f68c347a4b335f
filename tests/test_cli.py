"""The command line end to end: the worked example, multi-input models, formats, and every bad-input case."""

import json
import os
import subprocess
import sys

import pytest
import torch
from fixtures import CAPTION_FLAGS, EXAMPLES, WORKED


def test_worked_example_exact_through_json(stats_json):
    report = stats_json(WORKED, "--shape", "3,500,500")
    rows = {r["name"]: r for r in report["layers"]}
    # docs/counting.md, by hand: conv1 250*250*3*2*7*7 etc.
    assert {k: rows["conv1"][k] for k in ("flops", "madd", "mem_read", "mem_write")} == {
        "flops": 18_375_000, "madd": 36_625_000, "mem_read": 3_001_176, "mem_write": 500_000}
    assert {k: rows["bn1"][k] for k in ("madd", "flops", "mem_read", "mem_write")} == {
        "madd": 500_000, "flops": 250_000, "mem_read": 500_016, "mem_write": 500_000}
    assert {k: rows["relu1"][k] for k in ("madd", "flops", "mem_read", "mem_write")} == {
        "madd": 125_000, "flops": 125_000, "mem_read": 500_000, "mem_write": 500_000}
    assert rows["conv1"]["input_shape"] == [[1, 3, 500, 500]]
    assert rows["conv1"]["output_shape"] == [[1, 2, 250, 250]]
    total = report["total"]
    assert total["flops"] == 18_375_000 + 250_000 + 125_000
    assert total["mem_read"] == 3_001_176 + 500_016 + 500_000  # the true sum (torchstat shows the last layer's)
    assert total["params"] == 2 * 3 * 7 * 7 + 2 * 2 and total["trainable_params"] == 298
    assert report["inputs"] == [{"name": None, "shape": [1, 3, 500, 500], "dtype": "float32"}]
    assert report["unsupported"] == {} and report["device"] == "cpu" and report["dtype"] == "float32"


def test_batch_scales_counts(stats_json):
    one = stats_json(WORKED, "--shape", "3,100,100")["total"]
    four = stats_json(WORKED, "--shape", "3,100,100", "--batch", "4")["total"]
    assert four["flops"] == 4 * one["flops"] and four["madd"] == 4 * one["madd"]
    # weights are read once per batch: 294 conv + 4 BN values are not multiplied by the batch
    assert four["mem_read"] == 4 * (one["mem_read"] - (294 + 4) * 4) + (294 + 4) * 4


def test_five_input_model_through_flags(stats_json):
    report = stats_json(str(EXAMPLES / "captioning.py") + ":CaptionModel", *CAPTION_FLAGS, "--batch", "2")
    assert [i["shape"] for i in report["inputs"]] == [[2, 50, 2048], [2, 50, 4], [2, 49, 2048], [2, 50, 49], [2, 19]]
    assert report["inputs"][-1]["dtype"] == "int64"
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["region_proj"]["flops"] == 2 * 50 * 2048 * 512
    assert report["unsupported"] == {}


def test_inputs_factory_and_keyword_inputs(stats_json):
    a = stats_json(str(EXAMPLES / "captioning.py") + ":CaptionModel", "--inputs",
                   "fixtures:make_caption_inputs", "--batch", "2")
    b = stats_json(str(EXAMPLES / "captioning.py") + ":CaptionModel", *CAPTION_FLAGS, "--batch", "2")
    assert a["total"] == b["total"]
    report = stats_json("fixtures:KwargsModel", "--input", "7:int64:50", "--input", "mask=7")
    assert report["inputs"][1] == {"name": "mask", "shape": [1, 7], "dtype": "float32"}
    assert any(r["type"] == "KwargsModel" and "mul" in r["ops"] for r in report["layers"])


def test_kwargs_factory_and_instance_targets(stats_json):
    report = stats_json("fixtures:NeedsArgs", "--kwargs", '{"width": 6}', "--shape", "6")
    assert report["total"]["flops"] == 6  # Linear(6, 1) on one row
    report = stats_json(str(EXAMPLES / "resnet.py") + ":resnet18", "--kwargs", '{"num_classes": 10}',
                        "--shape", "3,32,32", "--depth", "1")
    assert report["total"]["params"] == 11_689_512 - 1000 * 513 + 10 * 513
    assert [r["name"] for r in report["layers"]][-1] == "fc"


def test_meta_device_builds_no_weights(stats_json):
    report = stats_json(str(EXAMPLES / "decoder.py") + ":Decoder", "--kwargs",
                        '{"dim": 4096, "mlp_dim": 11008, "layers": 4, "vocab_size": 32000, "heads": 32, '
                        '"kv_heads": 32}', "--device", "meta", "--input", "512:int64:32000")
    assert report["device"] == "meta"
    # per layer 4 * 4096^2 (attention) + 3 * 4096 * 11008 (MLP) + 2 * 4096 (norms); embed + head + final norm
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    assert report["total"]["params"] == 4 * per_layer + 2 * 32000 * 4096 + 4096


def test_dtype_changes_bytes_not_counts(stats_json):
    f32 = stats_json(WORKED, "--shape", "3,50,50")["total"]
    bf16 = stats_json(WORKED, "--shape", "3,50,50", "--dtype", "bfloat16")["total"]
    assert bf16["flops"] == f32["flops"] and bf16["mem_read"] * 2 == f32["mem_read"]


def test_formats_and_output_file(run, tmp_path):
    code, out, _ = run("stats", WORKED, "--shape", "3,500,500")
    assert code == 0 and "conv1" in out and "18.38M" in out and "total" in out
    code, out, _ = run("stats", WORKED, "--shape", "3,500,500", "--format", "csv")
    lines = out.splitlines()
    assert lines[0].startswith("Module,Type") and lines[1].split(",")[4:9] == [
        "294", "36625000", "18375000", "3001176", "500000"]
    code, out, _ = run("stats", WORKED, "--shape", "3,500,500", "--format", "markdown")
    assert "| conv1 | Conv2d |" in out
    target = tmp_path / "r.json"
    code, out, _ = run("stats", WORKED, "--shape", "3,500,500", "--format", "json", "-o", target)
    assert code == 0 and out == "" and json.loads(target.read_text())["total"]["flops"] == 18_750_000


def test_depth_folds(stats_json):
    report = stats_json(str(EXAMPLES / "resnet.py") + ":resnet18", "--shape", "3,64,64", "--depth", "0")
    assert report["layers"] == []
    report = stats_json(str(EXAMPLES / "resnet.py") + ":resnet18", "--shape", "3,64,64", "--depth", "1")
    assert sum(r["flops"] for r in report["layers"]) == report["total"]["flops"]


def test_strict_fails_on_uncounted_ops(run):
    code, out, err = run("stats", "fixtures:Unsupported", "--shape", "3,3")
    assert code == 0 and "Not counted" in out
    code, out, err = run("stats", "fixtures:Unsupported", "--shape", "3,3", "--strict")
    assert code == 1 and "--strict" in err and "linalg_inv" in err


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["stats", "no_such_module_xyz:Net", "--shape", "3"], 2, "no module named 'no_such_module_xyz'"),
        (["stats", "fixtures:NoSuchNet", "--shape", "3"], 2, "has no attribute 'NoSuchNet'"),
        (["stats", "fixtures:EXAMPLES", "--shape", "3"], 2, "not a model"),
        (["stats", "fixtures:attention_flops", "--shape", "3"], 2, "cannot be called"),
        (["stats", "fixtures:NeedsArgs", "--shape", "3"], 2, "--kwargs"),
        (["stats", "fixtures", "--shape", "3"], 2, "pkg.module:Name"),
        (["stats", "missing/file.py:Net", "--shape", "3"], 2, "does not exist"),
        (["stats", WORKED, "--shape", "3,a,5"], 2, "is not a shape"),
        (["stats", WORKED, "--shape", "3,0,5"], 2, "positive"),
        (["stats", WORKED, "--input", "3,5:float8"], 2, "unknown dtype 'float8'"),
        (["stats", WORKED, "--input", "3:int64:x"], 2, "HIGH"),
        (["stats", WORKED, "--input", "1x=3"], 2, "not a valid keyword"),
        (["stats", WORKED, "--input", "3:float32:1:2"], 2, "too many"),
        (["stats", WORKED], 2, "no inputs"),
        (["stats", WORKED, "--shape", "3", "--input", "3"], 2, "only one of"),
        (["stats", "fixtures:NeedsArgs", "--kwargs", "{width: 3}", "--shape", "3"], 2, "not valid JSON"),
        (["stats", "fixtures:NeedsArgs", "--kwargs", "[3]", "--shape", "3"], 2, "JSON object"),
        (["stats", "fixtures:NeedsArgs", "--kwargs", '{"depth": 3}', "--shape", "3"], 2, "cannot be called"),
        (["stats", WORKED, "--shape", "4,32,32"], 1, "layer 'conv1' (Conv2d) with input shapes 1×4×32×32"),
        (["stats", WORKED, "--shape", "3,32,32", "-o", "/no/such/dir/r.json"], 2, "does not exist"),
        (["stats", WORKED, "--shape", "3,32,32", "--format", "yaml"], 2, "yaml"),
        (["stats", WORKED, "--shape", "3,32,32", "--batch", "0"], 2, "batch"),
        (["stats", WORKED, "--shape", "3,32,32", "--bogus"], 2, "--bogus"),
        (["stats", "fixtures:broken_factory", "--shape", "3"], 1,
         "building 'fixtures:broken_factory' failed: RuntimeError: weights file not found"),
    ],
)
def test_bad_input_one_line_no_traceback(run, argv, code, needle):
    got, out, err = run(*argv)
    assert got == code, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_import_error_in_user_file(run, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise RuntimeError('boom at import\\nsecond line')\n")  # a two-line message
    code, out, err = run("stats", f"{bad}:Net", "--shape", "3")
    assert code == 1 and "boom at import" in err and len(err.strip().splitlines()) == 1


def test_user_file_imports_its_neighbours(stats_json, tmp_path):
    (tmp_path / "layers.py").write_text("from torch import nn\nclass Block(nn.Linear):\n    pass\n")
    (tmp_path / "net.py").write_text("from torch import nn\nfrom layers import Block\n"
                                     "def build(width=3):\n    return nn.Sequential(Block(width, 2))\n")
    report = stats_json(f"{tmp_path / 'net.py'}:build", "--shape", "3")
    assert report["total"]["flops"] == 6


def test_unwritable_file_left_untouched(run, tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("precious")
    code, _, err = run("stats", WORKED, "--shape", "4,32,32", "-o", target)
    assert code == 1 and target.read_text() == "precious"
    if os.geteuid() != 0:  # root can write anywhere
        target.chmod(0o444)
        code, _, err = run("stats", WORKED, "--shape", "3,32,32", "-o", target)
        assert code == 2 and "not writable" in err


def test_debug_shows_traceback(run):
    code, _, err = run("stats", WORKED, "--shape", "4,32,32", "--debug")
    assert code == 1 and "Traceback" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(run):
    code, _, err = run("stats", WORKED, "--shape", "3,8,8", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


def test_python_dash_m_subprocess():
    result = subprocess.run([sys.executable, "-m", "modelprof", "stats", WORKED, "--shape", "3,500,500",
                             "--format", "json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["madd"] == 36_625_000 + 500_000 + 125_000
    result = subprocess.run([sys.executable, "-m", "modelprof", "stats", WORKED, "--shape", "x"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_renderers_views_and_help_import_no_torch():
    # renderers never touch torch, and --help/--version start without it (python -X importtime shows the same)
    probe = ("import sys\nimport modelprof.render, modelprof.reports.catalog\nfrom modelprof.cli import main\n"
             "for argv in (['--help'], ['--version'], ['stats', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit as exit_:\n        assert exit_.code == 0\n"
             "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
