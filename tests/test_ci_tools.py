"""`modelprof check` and `modelprof compare` exit codes, budgets from TOML, the Markdown comparison against a
stored file, and the thop/torchstat cross-checks on the five-input model through the adapter."""

import json
from pathlib import Path

import pytest
from fixtures import CAPTION, CAPTION_FLAGS, EXAMPLES, WORKED

from modelprof.render import render
from modelprof.reports.compare import Comparison, compare_reports, comparison_document
from modelprof.reports.stats import Report, stats_document

EXPECTED = Path(__file__).parent / "expected"

# The worked example at 3x500x500 (docs/counting.md): params 298, Flops 18,750,000, MAdd 37,250,000,
# MemRead 4,001,192, MemWrite 1,500,000.


@pytest.mark.parametrize(
    ("limits", "code", "lines"),
    [
        (["--max-params", "298", "--max-flops", "18.75M"], 0, ["pass  params: 298", "pass  flops: 18.75M"]),
        (["--max-params", "297"], 1, ["FAIL  params: 298 (limit 297)"]),
        (["--max-madd", "37.25M", "--max-mem", "5.51MB"], 0, ["pass  madd", "pass  mem_read + mem_write"]),
        (["--max-mem", "5.5MB"], 1, ["FAIL  mem_read + mem_write"]),  # 4,001,192 + 1,500,000 = 5,501,192
        (["--max-mem-read", "4001192", "--max-mem-write", "1.4MB"], 1, ["pass  mem_read", "FAIL  mem_write"]),
        (["--max-latency-ms", "100000", "--duration", "0.05"], 0, ["pass  median latency [ms]"]),
    ],
)
def test_check_exit_codes(run, limits, code, lines):
    got, out, err = run("check", WORKED, "--shape", "3,500,500", *limits)
    assert got == code, err
    for line in lines:
        assert line in out
    assert len(out.splitlines()) == len([x for x in limits if x.startswith("--max")])
    if code:
        assert "limit(s) exceeded" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "no limits given"),
        (["--max-flops", "lots"], "not a count"),
        (["--max-mem", "5XB"], "not a size"),
        (["--budget", "/no/such/budget.toml"], "no such file"),
    ],
)
def test_check_usage_errors(run, argv, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here
    code, out, err = run("check", WORKED, "--shape", "3,8,8", *argv)
    assert code == 2 and needle in err and out == ""


def test_budget_from_toml_and_pyproject(run, tmp_path, monkeypatch):
    budget = tmp_path / "budget.toml"
    budget.write_text('max_params = "300"\nmax_flops = 18_000_000\n')
    code, out, _ = run("check", WORKED, "--shape", "3,500,500", "--budget", budget)
    assert code == 1 and "pass  params" in out and "FAIL  flops" in out
    # the command line wins over the file
    code, out, _ = run("check", WORKED, "--shape", "3,500,500", "--budget", budget, "--max-flops", "19M")
    assert code == 0
    # [tool.modelprof] of ./pyproject.toml by default
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.modelprof]\nmax_madd = "37.25M"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("check", WORKED, "--shape", "3,500,500")
    assert code == 0 and out.startswith("pass  madd")
    (tmp_path / "pyproject.toml").write_text('[tool.modelprof]\nmax_speed = 3\n')
    code, _, err = run("check", WORKED, "--shape", "3,500,500")
    assert code == 2 and "unknown key(s) max_speed" in err


def save_stats(run, path, *argv):
    code, _, err = run("stats", *argv, "--format", "json", "-o", path)
    assert code == 0, err
    return path


def test_compare_exit_codes_and_layers(run, tmp_path):
    resnet = str(EXAMPLES / "resnet.py") + ":resnet18"
    old = save_stats(run, tmp_path / "old.json", resnet, "--shape", "3,32,32")
    same = save_stats(run, tmp_path / "same.json", resnet, "--shape", "3,32,32")
    bigger = save_stats(run, tmp_path / "big.json", resnet, "--shape", "3,32,32", "--kwargs",
                        '{"num_classes": 2000}')
    code, out, _ = run("compare", old, same, "--fail-over", "0%")
    assert code == 0 and "No layer changed." in out
    # fc grows from 512*1000 + 1000 to 512*2000 + 2000 params: +513,000 on 11,689,512 = +4.39 %, the largest
    # relative growth (Flops +512,000 on ~37.8M; MemRead +2,052,000 bytes on ~50 MB)
    code, out, err = run("compare", old, bigger, "--fail-over", "5%")
    assert code == 0, err
    code, out, err = run("compare", old, bigger, "--fail-over", "4%")
    assert code == 1 and "params +4.4 %" in err
    code, out, _ = run("compare", old, bigger, "--format", "json")
    data = json.loads(out)
    fc = next(layer for layer in data["layers"] if layer["name"] == "fc")
    assert fc["status"] == "changed"
    params = next(d for d in fc["deltas"] if d["metric"] == "params")
    assert params["change"] == 513_000 and params["old"] == 513_000 and params["percent"] == 100.0


def test_compare_added_removed_and_usage_errors(run, tmp_path):
    a = save_stats(run, tmp_path / "a.json", WORKED, "--shape", "3,32,32")
    b = save_stats(run, tmp_path / "b.json", str(EXAMPLES / "resnet.py") + ":resnet18", "--shape", "3,32,32")
    code, out, _ = run("compare", a, b, "--format", "json")
    statuses = {layer["name"]: layer["status"] for layer in json.loads(out)["layers"]}
    assert statuses["relu1"] == "removed" and statuses["layer1.0.conv1"] == "added"
    assert statuses["conv1"] == "changed"
    code, _, err = run("compare", a, tmp_path / "missing.json")
    assert code == 2 and "no such file" in err
    (tmp_path / "junk.json").write_text("{]")
    code, _, err = run("compare", a, tmp_path / "junk.json")
    assert code == 2 and "not a JSON report" in err
    code, _, err = run("compare", a, b, "--fail-over", "much")
    assert code == 2 and "not a percentage" in err


def test_compare_bench_reports_latency(run, tmp_path):
    fast = ["--reps", "3", "--warmup", "1", "--warmup-time", "0", "--format", "json"]
    for name in ("x", "y"):
        code, _, err = run("bench", WORKED, "--shape", "3,16,16", *fast, "-o", tmp_path / f"{name}.json")
        assert code == 0, err
    code, out, _ = run("compare", tmp_path / "x.json", tmp_path / "y.json", "--format", "markdown")
    assert code == 0 and "| batch 1 median |" in out
    code, _, err = run("compare", tmp_path / "x.json", save_stats(run, tmp_path / "s.json", WORKED,
                                                                            "--shape", "3,16,16"))
    assert code == 2 and "two stats reports or two bench reports" in err


def test_markdown_comparison_matches_stored_file(fixed_report):
    # expected/compare.md was written by hand-checking this rendering once; regenerate on purpose only
    comparison: Comparison = compare_reports(fixed_report(), fixed_report(madd_scale=2, extra_layer=True))
    assert render(comparison_document(comparison), "markdown") == (EXPECTED / "compare.md").read_text()


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_every_renderer_matches_its_stored_output(fixed_report, fmt):
    # expected/stats.<fmt> were checked by hand against the fixed report's arithmetic (conftest.fixed_report);
    # regenerate on purpose only
    assert render(stats_document(fixed_report()), fmt) == (EXPECTED / f"stats.{fmt}").read_text()


def test_renderers_on_fixed_report(fixed_report):
    report = fixed_report()
    document = stats_document(report)
    assert render(document, "csv").splitlines()[1] == ("conv1,Conv2d,1×3×500×500,1×2×250×250,294,36625000,"
                                                       "18375000,3001176,500000,1")
    assert Report.from_dict(json.loads(render(document, "json"))) == report
    assert "18.38M" in render(document, "table")


def test_thop_crosscheck_on_five_input_model(run):
    pytest.importorskip("thop")
    code, out, err = run("stats", CAPTION, *CAPTION_FLAGS, "--batch", "2", "--crosscheck", "thop",
                         "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    rows = {r["name"]: r for r in data["crosscheck"]["layers"]}
    # thop counts Linear exactly as modelprof: 2 * 50 * 2048 * 512
    assert rows["region_proj"]["tool_flops"] == rows["region_proj"]["flops"] == 2 * 50 * 2048 * 512
    assert rows["feed_forward.1"]["tool_flops"] == 0 and "zero_ops" in rows["feed_forward.1"]["reason"]
    assert "invisible to thop" in rows["(root)"]["reason"]
    assert data["crosscheck"]["error"] is None


def test_torchstat_crosscheck_survives_layers_it_cannot_handle(run):
    pytest.importorskip("torchstat")
    code, out, err = run("stats", CAPTION, *CAPTION_FLAGS, "--crosscheck", "torchstat")
    assert code == 0, err
    assert "torchstat fails on this layer (AssertionError on 3-D input)" in out
    assert "torchstat has no formula for LayerNorm" in out
    code, out, err = run("stats", WORKED, "--shape", "3,500,500", "--crosscheck", "torchstat",
                         "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["crosscheck"]["layers"]}
    assert rows["conv1"]["tool_madd"] == 36_625_000 and rows["conv1"]["reason"] == ""
    code, _, err = run("stats", WORKED, "--shape", "3,8,8", "--crosscheck", "torchstat", "--batch", "2")
    assert code == 2 and "--batch 1" in err


def test_example_workflow_commands_pass(run, tmp_path):
    # the commands of examples/ci/modelprof.yml, against its committed baseline and budget
    ci = EXAMPLES / "ci"
    target = str(EXAMPLES / "resnet.py") + ":resnet18"
    code, out, err = run("check", target, "--shape", "3,224,224", "--budget", ci / "budget.toml")
    assert code == 0, out + err
    new = save_stats(run, tmp_path / "new.json", target, "--shape", "3,224,224")
    code, out, err = run("compare", ci / "baseline.json", new, "--format", "markdown", "--fail-over", "5%")
    assert code == 0, err
    assert "| flops | 1.82G | 1.82G | ±0 (+0.0 %) |" in out
    workflow = (ci / "modelprof.yml").read_text()
    assert "modelprof check" in workflow and "modelprof compare examples/ci/baseline.json" in workflow


def test_crosscheck_without_the_extra_says_how_to_install(run, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "thop", None)  # as if thop were not installed
    code, out, err = run("stats", WORKED, "--shape", "3,8,8", "--backend", "thop")
    assert code == 2 and "pip install 'modelprof[crosscheck]'" in err and out == ""
