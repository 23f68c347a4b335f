"""Shared test helpers as fixtures: the CLI runner, JSON stats, and the fixed report the renderers are held to.
The test models and target paths live in fixtures.py."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the reference measurements (memtracker.py) tests and benchmarks share
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def run(capsys):
    """``run(*argv) -> (exit code, stdout, stderr)`` through ``modelprof.cli.main``."""
    from modelprof.cli import main

    def runner(*argv):
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return runner


@pytest.fixture
def stats_json(run):
    """``stats_json(*argv) -> dict``: ``modelprof stats ... --format json``, which must succeed."""

    def runner(*argv):
        code, out, err = run("stats", *argv, "--format", "json")
        assert code == 0, err
        return json.loads(out)

    return runner


@pytest.fixture
def fixed_report():
    """``fixed_report(madd_scale=1, extra_layer=False)``: a hand-made stats report (no model), built by keyword.

    The worked example's conv1 and relu1 rows (docs/counting.md): conv1 Flops 250*250*3*2*7*7 = 18,375,000,
    MAdd 36,625,000, MemRead 3,001,176, MemWrite 500,000; relu1 125,000 / 125,000 / 500,000 / 500,000.
    """
    from modelprof.reports.stats import InputInfo, LayerCost, Report, TotalCost

    def make(madd_scale: int = 1, extra_layer: bool = False) -> Report:
        layers = [
            LayerCost(name="conv1", type="Conv2d", input_shape=((1, 3, 500, 500),), output_shape=((1, 2, 250, 250),),
                      values={"params": 294, "madd": 36_625_000 * madd_scale, "flops": 18_375_000,
                              "mem_read": 3_001_176, "mem_write": 500_000}, calls=1),
            LayerCost(name="relu1", type="ReLU", input_shape=((1, 2, 250, 250),), output_shape=((1, 2, 250, 250),),
                      values={"params": 0, "madd": 125_000, "flops": 125_000, "mem_read": 500_000,
                              "mem_write": 500_000}, calls=1),
        ]
        if extra_layer:
            layers.append(LayerCost(name="fc", type="Linear", input_shape=((1, 10),), output_shape=((1, 2),),
                                    values={"params": 22, "madd": 38, "flops": 20, "mem_read": 128,
                                            "mem_write": 8}, calls=1))
        keys = ("params", "madd", "flops", "mem_read", "mem_write")
        total = TotalCost(name="total", type="Net", input_shape=((1, 3, 500, 500),),
                          output_shape=((1, 2, 250, 250),),
                          values={k: sum(x.values[k] for x in layers) for k in keys}, calls=1,
                          trainable_params=sum(x.values["params"] for x in layers))
        return Report(model="examples/worked.py:Net", inputs=(InputInfo(None, (1, 3, 500, 500), "float32"),),
                      device="cpu", dtype="float32", layers=tuple(layers), total=total)

    return make
