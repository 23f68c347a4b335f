"""No model can break the contract: stdout holds only the report, exit codes stay 0/1/2, one stderr line per
error, and "internal error" is never the answer to a user's model, input or file."""

import json

import pytest
from fixtures import CAPTION, WORKED

FAST = ["--reps", "2", "--warmup", "1", "--warmup-time", "0"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("modelprof:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "table"])
def test_prints_in_the_model_go_to_stderr(run, fmt):
    code, out, err = run("stats", "fixtures:Printer", "--shape", "4", "--format", fmt)
    assert code == 0, err
    assert "forward got (1, 4)" in err and "building Printer" in err
    assert "forward got" not in out and "building" not in out
    if fmt == "json":
        assert json.loads(out)["total"]["flops"] == 4 * 2  # Linear 4 -> 2 on one row: M*Ci*Co = 1*4*2


def test_prints_in_the_model_do_not_corrupt_bench_json(run):
    code, out, err = run("bench", "fixtures:Printer", "--shape", "4", *FAST, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["kind"] == "bench" and "forward got" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["stats", "fixtures:Exiter", "--shape", "4"], "called sys.exit(3) in layer '(root)' (Exiter)"),
        (["bench", "fixtures:Exiter", "--shape", "4", *FAST], "called sys.exit(3)"),
        (["check", "fixtures:Exiter", "--shape", "4", "--max-flops", "1G"], "called sys.exit(3)"),
        (["stats", "fixtures:ExitsWhenBuilt", "--shape", "4"], "called sys.exit(4)"),
    ],
)
def test_sys_exit_in_the_model_is_a_model_failure(run, argv, needle):
    code, out, err = run(*argv)
    assert code == 1 and out == ""
    assert needle in one_error_line(err)


def test_input_too_large_to_allocate_names_the_size(run):
    # 1*3*100000*100000 float32 = 120,000,000,000 bytes = 111.76 GiB
    code, out, err = run("stats", WORKED, "--shape", "3,100000,100000")
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert "needs 111.76GiB (120,000,000,000 bytes)" in line and "--device meta" in line


def test_dimension_that_overflows_is_a_usage_error(run):
    code, out, err = run("stats", WORKED, "--shape", "3,99999999999999999999,8")
    assert code == 2 and out == "" and "more than a tensor can hold" in one_error_line(err)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"hello": 1}', "no 'kind' key"),
        ('[1, 2, 3]', "no 'kind' key"),
        ('{"kind": "stats", "schema_version": 1, "model": "m"}', "without its 'layers' key"),
        ('{"kind": "stats", "schema_version": 1, "model": "m", "layers": 3, "total": {}}', "malformed"),
        ('{"kind": "bench", "schema_version": 99}', "schema_version 99"),
        ('{"kind": "pie"}', "kind 'pie'"),
    ],
)
def test_compare_on_json_that_is_not_a_report(run, tmp_path, content, needle):
    good = tmp_path / "good.json"
    code, _, err = run("stats", WORKED, "--shape", "3,8,8", "--format", "json", "-o", good)
    assert code == 0, err
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = run("compare", good, bad)
    assert code == 2 and out == "" and needle in one_error_line(err)


def test_crosscheck_feeds_a_keyword_float_input(run):
    pytest.importorskip("thop")
    # every input a keyword: the adapter feeds the first float one (detections) by name
    flags = ["--input", "detections=50,2048", "--input", "boxs=50,4", "--input", "grids=49,2048",
             "--input", "masks=50,49", "--input", "captions=19:int64:10000"]
    code, out, err = run("stats", CAPTION, *flags, "--crosscheck", "thop", "--format", "json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)["crosscheck"]["layers"]}
    # thop counts Linear exactly as modelprof: 50 * 2048 * 512
    assert rows["region_proj"]["tool_flops"] == rows["region_proj"]["flops"] == 50 * 2048 * 512


def test_find_batch_on_cpu_defaults_to_the_available_memory(run, monkeypatch):
    import modelprof.timing.measure

    # as if this machine had 256 MiB available: Hungry takes 16 MiB per sample (see test_timing)
    monkeypatch.setattr(modelprof.timing.measure, "available_memory_bytes", lambda: 256 * 2**20)
    code, out, err = run("bench", "fixtures:Hungry", "--shape", "1024", "--find-batch", *FAST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["environment"]["memory_limit"] == 256 * 2**20
    assert report["environment"]["memory_limit_from"] == "the memory available on this machine"
    assert 8 <= report["max_batch"] <= 20
    code, out, err = run("bench", "fixtures:Hungry", "--shape", "1024", "--find-batch", *FAST, "--quiet")
    assert "Memory limit: 256.00MiB (the memory available on this machine)" in out


@pytest.mark.parametrize("train", [[], ["--train"]])
def test_a_shape_from_the_values_on_meta_points_to_the_cpu(run, train):
    # torch's own message proposes a config flag that would make nonzero pretend every element is non-zero
    code, out, err = run("stats", "fixtures:ValueShaped", "--shape", "4", "--device", "meta", *train)
    line = one_error_line(err)
    assert code == 1 and out == "" and "in layer '(root)'" in line and "--device cpu" in line, err
    assert "meta_nonzero_assume_all_nonzero" not in line
    code, out, err = run("stats", "fixtures:ValueShaped", "--shape", "4", *train)
    assert code == 0, err
