"""Saved reports: every kind round-trips through its JSON form exactly, ``modelprof show`` renders any of them again
in any format, a report of an older schema is read (or refused in one line), and the JSON form does not change
unnoticed (the golden files in tests/golden, made by tests/golden/make.py, regenerated on purpose only)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from modelprof.reports.catalog import KINDS, read_report
from modelprof.reports.serial import SCHEMA_VERSION

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = GOLDEN.parent.parent
_spec = importlib.util.spec_from_file_location("golden_make", GOLDEN / "make.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

NAMES = sorted(make.COMMANDS)


def golden(name: str, folder: Path = GOLDEN) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_every_kind_has_a_golden_file():
    kinds = {golden(name)["kind"] for name in NAMES}
    assert kinds == set(KINDS)  # all seven: stats (forward, train, generate, crosscheck) ...
    assert all(golden(name)["schema_version"] == SCHEMA_VERSION for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_kind_round_trips_exactly(name):
    data = golden(name)
    report = read_report(data)
    assert report.to_dict() == data  # the JSON form, key for key and value for value
    assert type(report).from_dict(json.loads(json.dumps(report.to_dict()))) == report  # and the object


@pytest.mark.parametrize("name", NAMES)
def test_show_reproduces_the_saved_json_and_renders_every_format(run, name):
    path = GOLDEN / f"{name}.json"
    code, out, err = run("show", path, "--format", "json")
    assert code == 0, err
    assert out == path.read_text()  # byte for byte
    for fmt in ("table", "markdown", "csv"):
        code, out, err = run("show", path, "--format", fmt)
        assert code == 0 and out.strip() and not err, (fmt, err)


@pytest.mark.parametrize("name", make.EXACT)
def test_counted_kinds_still_give_their_golden_json(run, monkeypatch, name):
    # counts are exact, so today's command gives the golden file; a difference is a change of the JSON form (or of
    # a count): regenerate with tests/golden/make.py on purpose, and say why in the commit
    monkeypatch.chdir(ROOT)
    code, out, err = run(*make.COMMANDS[name], "--format", "json")
    assert code in (0, 1), err
    assert json.loads(out) == golden(name)


def _close(a, b) -> bool:
    """Equal, floats within 1e-12 relative (schema 2 kept times in ms: seconds come back through a division)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


#: schema 2's keys that schema 3 renamed
_RENAMED = {"backend": "crosscheck", "backend_flops": "tool_flops", "backend_madd": "tool_madd"}


@pytest.mark.parametrize("name", sorted(p.stem for p in (GOLDEN / "v2").glob("*.json")))
def test_schema_2_reports_are_read_as_today(run, name):
    # tests/golden/v2 was saved by modelprof 0.2.0 (schema 2) with the same commands
    old = golden(name, GOLDEN / "v2")
    assert old["schema_version"] == 2
    upgraded = read_report(old).to_dict()
    # today's form, key for key (schema 3 only adds keys), and every value the old file held, kept
    assert _keys_within(_strip_values(old), _strip_values(upgraded))
    assert _values_kept(old, upgraded)
    code, out, err = run("show", GOLDEN / "v2" / f"{name}.json", "--format", "markdown")
    assert code == 0 and out, err


def _keys_within(old, new) -> bool:
    """Every key of ``old`` (renamed as schema 3 renamed it) is in ``new``."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(
            _keys_within(v, new.get(_RENAMED.get(k, k), new.get("tool") if k == "backend" else None))
            for k, v in old.items() if k != "schema_version")
    if isinstance(old, list):
        return isinstance(new, list) and all(_keys_within(a, b) for a, b in zip(old, new, strict=False))
    return new is not None or old == "NoneType"


def _values_kept(old, new) -> bool:
    """Every value of ``old`` is in ``new`` at the same (renamed) place; floats within 1e-12 (ms became seconds
    and back)."""
    if isinstance(old, dict):
        return all(_values_kept(v, new.get(_RENAMED.get(k, k), new.get("tool") if k == "backend" else None))
                   for k, v in old.items() if k != "schema_version")
    if isinstance(old, list):
        return all(_values_kept(a, b) for a, b in zip(old, new, strict=False))
    return _close(old, new)


def _strip_values(value):
    """The shape of a JSON value: its keys, with every leaf replaced by its type (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _strip_values(v) for k, v in value.items() if k not in ("environment", "source")}
    if isinstance(value, list):
        return [_strip_values(value[0])] if value else []
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def test_a_schema_1_report_is_read():
    # schema 1 called the peaks' MAdd/s "flops"
    data = golden("calibrate", GOLDEN / "v2")
    peaks = data["peaks"]
    data = {**data, "schema_version": 1, "peaks": {"flops": peaks.pop("madd_per_s"), **peaks}}
    assert read_report(data).peaks.flops == golden("calibrate", GOLDEN / "v2")["peaks"]["madd_per_s"]


@pytest.mark.parametrize("version", [0, 99, "3", None])
def test_an_unknown_schema_version_is_refused_in_one_line(run, tmp_path, version):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**golden("stats"), "schema_version": version}))
    code, out, err = run("show", path)
    assert code == 2 and not out and err.count("\n") == 1
    assert f"schema_version {version!r}" in err and "reads 1, 2, 3" in err


def test_show_refuses_what_is_not_a_report(run, tmp_path):
    code, _, err = run("show", tmp_path / "missing.json")
    assert code == 2 and "no such file" in err
    (tmp_path / "list.json").write_text("[1, 2]")
    code, _, err = run("show", tmp_path / "list.json")
    assert code == 2 and "no 'kind' key" in err and err.count("\n") == 1
    code, _, err = run("show", GOLDEN / "bench.json", "--depth", "1")
    assert code == 2 and "--depth folds the rows of a stats report" in err


def test_show_folds_a_saved_stats_report(run):
    code, out, err = run("show", GOLDEN / "generate.json", "--depth", "1", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    # folding keeps the totals: the rows still sum to them (Flops are summed)
    assert {r["name"] for r in data["layers"]} <= {"model", "lm_head", "(root)"}
    assert sum(r["flops"] for r in data["layers"]) == data["total"]["flops"] == golden("generate")["total"]["flops"]


def test_compare_of_two_generate_reports_shows_the_kv_cache_and_decode_per_token():
    old, new = golden("generate"), golden("generate-long")
    deltas = {d["metric"]: d for d in golden("compare")["total"]}
    # tiny-llama: 2 layers, 2 KV heads of dim 64 / 4 = 16, float32: 2 (K and V) · 2 · 2 · 16 · 4 = 512 bytes a
    # position; 16 + 4 positions at the end, then 32 + 4
    assert deltas["kv_cache_bytes"]["old"] == old["generation"]["kv_cache"] == 20 * 512
    assert deltas["kv_cache_bytes"]["new"] == new["generation"]["kv_cache"] == 36 * 512
    assert deltas["kv_cache_bytes"]["change"] == 16 * 512
    assert deltas["decode_flops_per_token"]["old"] == old["total"]["dec_flops"] / old["generation"]["new_tokens"]
    assert deltas["decode_flops_per_token"]["new"] == new["total"]["dec_flops"] / new["generation"]["new_tokens"]
    decode = old["total"]["dec_mem_read"] + old["total"]["dec_mem_write"]
    assert deltas["decode_bytes_per_token"]["old"] == decode / old["generation"]["new_tokens"]
