"""Every peer's number, reproduced: ``--convention`` beside the tool itself on the coverage sweep's models.

    python benchmarks/conventions.py [--family torchvision|timm|transformers|recurrent ...] [--only NAME ...]
                                     [--tool NAME ...] [-o docs/conventions-sweep.md]

For every model of ``benchmarks/coverage.py`` (built from code, random weights, eval mode) and every tool, it runs the
tool as its README says (thop.profile, fvcore's FlopCountAnalysis, ptflops' get_model_complexity_info with its default
pytorch backend, calflops' calculate_flops, and PyTorch's FlopCounterMode around a forward with autograd on) on a copy
of the model, then ``modelprof.count_costs(..., convention=tool)`` on another copy (a model that caches tensors in its
first forward, as timm's ConViT does, starts fresh for each, as from the command line), and compares the totals exactly
(integers; thop's float64 total is exact below 2**53). A model the tool cannot run is listed with the tool's error and
left out of that tool's share; a model whose inputs a tool cannot take (keyword inputs for thop and fvcore, which call
``model(*inputs)``) is given them through a small adapter module, the same for the tool and for modelprof.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from coverage import FAMILIES, modelprof_one_line, quiet  # noqa: E402
from torch import nn  # noqa: E402

import modelprof  # noqa: E402

TOOLS = ("thop", "fvcore", "ptflops", "calflops", "flopcounter")


class Positional(nn.Module):
    """``model(*tensors[:n], **dict(zip(keys, tensors[n:])), **fixed)`` as ``adapter(*tensors)``: keyword inputs for
    tools that pass positional ones only (``fixed``: keyword arguments that are no tensors, such as a count)."""

    def __init__(self, model: nn.Module, n: int, keys: tuple[str, ...], fixed: dict) -> None:
        super().__init__()
        self.model, self.n, self.keys, self.fixed = model, n, keys, fixed

    def forward(self, *tensors: torch.Tensor):
        named = dict(zip(self.keys, tensors[self.n:], strict=True))
        return self.model(*tensors[:self.n], **named, **self.fixed)


def positional(model: nn.Module, args: tuple, kwargs: dict) -> tuple[nn.Module, tuple]:
    """The model and inputs as ``model(*inputs)``."""
    if not kwargs:
        return model, args
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    fixed = {k: v for k, v in kwargs.items() if k not in tensors}
    return Positional(model, len(args), tuple(tensors), fixed), (*args, *tensors.values())


def run_thop(model: nn.Module, args: tuple, kwargs: dict) -> int:
    import thop

    model, inputs = positional(model, args, kwargs)
    ops, _ = thop.profile(model, inputs=inputs, verbose=False)
    return int(ops)


def run_fvcore(model: nn.Module, args: tuple, kwargs: dict) -> int:
    from fvcore.nn import FlopCountAnalysis

    model, inputs = positional(model, args, kwargs)
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def run_ptflops(model: nn.Module, args: tuple, kwargs: dict) -> int:
    from ptflops import get_model_complexity_info

    if args and kwargs:
        model, args = positional(model, args, kwargs)
        kwargs = {}
    if len(args) > 1:
        raise ValueError("ptflops feeds one tensor or one dict of keyword inputs")
    made = args[0] if args else kwargs
    macs, _ = get_model_complexity_info(model, (1,), input_constructor=lambda _: made, as_strings=False,
                                        print_per_layer_stat=False, verbose=False)
    if macs is None:
        raise RuntimeError("ptflops returned None (its forward failed)")
    return int(macs)


def run_calflops(model: nn.Module, args: tuple, kwargs: dict) -> int:
    from calflops import calculate_flops

    flops, _macs, _params = calculate_flops(model, args=list(args), kwargs=kwargs or None, output_as_string=False,
                                            print_results=False, print_detailed=False)
    return int(flops)


def run_flopcounter(model: nn.Module, args: tuple, kwargs: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(*args, **kwargs)
    return counter.get_total_flops()


RUNNERS: dict[str, Callable[[nn.Module, tuple, dict], int]] = {
    "thop": run_thop, "fvcore": run_fvcore, "ptflops": run_ptflops, "calflops": run_calflops,
    "flopcounter": run_flopcounter,
}


@dataclass
class Result:
    family: str
    model: str
    error: str = ""  #: the model could not be built
    ours: dict[str, int | None] = field(default_factory=dict)
    theirs: dict[str, int | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def status(self, tool: str) -> str:
        """exact, differs, tool failed, or modelprof failed."""
        if tool in self.notes and self.theirs.get(tool) is None:
            return "tool failed"
        if self.ours.get(tool) is None:
            return "modelprof failed"
        return "exact" if self.ours[tool] == self.theirs[tool] else "differs"


@contextlib.contextmanager
def torch_restored() -> Iterator[None]:
    """torch's functions and tensor methods as they were, whatever a tool left patched: calflops, failing half-way
    through a forward, leaves its wrappers in ``torch.nn.functional`` and on ``torch.Tensor``."""
    import torch.nn.functional as F

    saved = [(owner, dict(vars(owner))) for owner in (F, torch)]
    tensor = {name: torch.Tensor.__dict__.get(name) for name in ("matmul", "mm", "bmm", "addmm", "mul", "add")}
    try:
        yield
    finally:
        for owner, attrs in saved:
            for name, value in attrs.items():
                if getattr(owner, name, None) is not value:
                    setattr(owner, name, value)
        for name, value in tensor.items():
            if torch.Tensor.__dict__.get(name) is not value:
                if value is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, value)


def run_model(family: str, case, tools: tuple[str, ...]) -> Result:
    result = Result(family, case.name)
    torch.manual_seed(0)
    try:
        with quiet():
            model = case.build().eval()
            args, kwargs = case.inputs()
    except Exception as exc:
        result.error = f"not built here: {type(exc).__name__}: {modelprof_one_line(exc)}"
        return result
    for tool in tools:
        try:
            with quiet(), warnings.catch_warnings(), torch_restored():
                warnings.simplefilter("ignore")
                result.theirs[tool] = RUNNERS[tool](copy.deepcopy(model), args, kwargs)
        except Exception as exc:
            result.theirs[tool] = None
            result.notes[tool] = f"{type(exc).__name__}: {modelprof_one_line(exc)}"[:160]
            continue
        try:
            with quiet():
                report = modelprof.count_costs(copy.deepcopy(model), args, kwargs, convention=tool)
            result.ours[tool] = report.total.flops
        except Exception as exc:
            result.ours[tool] = None
            result.notes[tool] = f"modelprof: {type(exc).__name__}: {modelprof_one_line(exc)}"[:160]
    del model
    gc.collect()
    return result


def markdown(results: list[Result], tools: tuple[str, ...], command: str) -> str:
    lines = ["# Conventions: every peer's number, reproduced", "",
             f"Made by `{command}` (torch {torch.__version__}). Each cell: modelprof `--convention TOOL` beside "
             "the tool itself, on one forward of the model; **=** is an exact match of the totals.", ""]
    lines += ["| tool | models the tool runs | reproduced exactly | share |", "|---|---:|---:|---:|"]
    for tool in tools:
        ran = [r for r in results if not r.error and r.status(tool) in ("exact", "differs", "modelprof failed")]
        exact = sum(r.status(tool) == "exact" for r in ran)
        share = f"{100 * exact / len(ran):.1f} %" if ran else "—"
        lines.append(f"| {tool} | {len(ran)} | {exact} | {share} |")
    lines += ["", "## Differences and failures", ""]
    lines += ["| model | tool | modelprof | tool | note |", "|---|---|---:|---:|---|"]
    for r in results:
        for tool in tools:
            status = r.status(tool) if not r.error else ""
            if status in ("differs", "modelprof failed"):
                lines.append(f"| {r.family}/{r.model} | {tool} | {r.ours.get(tool)} | {r.theirs.get(tool)} | "
                             f"{r.notes.get(tool, '')} |")
    lines += ["", "## Where the tool itself fails", "", "| model | tool | its error |", "|---|---|---|"]
    for r in results:
        for tool in tools:
            if not r.error and r.status(tool) == "tool failed":
                lines.append(f"| {r.family}/{r.model} | {tool} | {r.notes[tool].replace('|', '/')} |")
    built = [r for r in results if r.error]
    if built:
        lines += ["", "## Not built here", ""] + [f"- {r.family}/{r.model}: {r.error}" for r in built]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=list(FAMILIES))
    parser.add_argument("--only", action="append", help="model names to run (default: all)")
    parser.add_argument("--tool", action="append", choices=TOOLS)
    parser.add_argument("-o", "--output", help="write the Markdown report here (default: stdout)")
    options = parser.parse_args()
    tools = tuple(options.tool or TOOLS)
    results = []
    for family in options.family or list(FAMILIES):
        for case in FAMILIES[family]():
            if options.only and case.name not in options.only:
                continue
            result = run_model(family, case, tools)
            cells = result.error or "  ".join(f"{t}:{result.status(t)}" for t in tools)
            print(f"{family:12} {case.name:40} {cells}", file=sys.stderr, flush=True)
            for tool in tools:
                if not result.error and result.status(tool) != "exact":
                    print(f"    {tool}: ours {result.ours.get(tool)} theirs {result.theirs.get(tool)} "
                          f"{result.notes.get(tool, '')}", file=sys.stderr, flush=True)
            results.append(result)
    command = "python benchmarks/conventions.py " + " ".join(sys.argv[1:])
    text = markdown(results, tools, command.strip())
    if options.output:
        Path(options.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
