"""Plain, frozen data that collectors return and renderers read. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

Shape = tuple[int, ...]

#: Name of the row holding the ops that the top-level module runs itself.
ROOT = "(root)"

COST_FIELDS = ("params", "madd", "flops", "mem_read", "mem_write")


@dataclass(frozen=True)
class LayerCost:
    """One row: a leaf module, or the ops a container module runs itself (a residual add, ``q @ k.T``).

    ``input_shape`` and ``output_shape`` list the shape of every tensor going in and out of the module's first
    call; ``calls`` counts how often it ran.
    """

    name: str
    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()
    params: int = 0
    madd: int = 0
    flops: int = 0
    mem_read: int = 0
    mem_write: int = 0
    calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; shapes become lists."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["input_shape"] = [list(s) for s in self.input_shape]
        d["output_shape"] = [list(s) for s in self.output_shape]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerCost:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["input_shape"] = tuple(tuple(s) for s in d.get("input_shape", ()))
        kw["output_shape"] = tuple(tuple(s) for s in d.get("output_shape", ()))
        return cls(**kw)


@dataclass(frozen=True)
class TotalCost(LayerCost):
    """The totals row: the exact sum of the rows, plus the trainable share of the parameters."""

    trainable_params: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["non_trainable_params"] = self.non_trainable_params
        return d


@dataclass(frozen=True)
class InputInfo:
    """One model input as it was built: its keyword name (None when positional), shape and dtype."""

    name: str | None
    shape: Shape
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ModuleInfo:
    """What folding needs to know of a module that may have no row of its own."""

    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything ``modelprof stats`` measured. ``to_dict()`` is the documented JSON."""

    model: str
    inputs: tuple[InputInfo, ...]
    device: str
    dtype: str
    layers: tuple[LayerCost, ...]
    total: TotalCost
    unsupported: dict[str, int] = field(default_factory=dict)
    modules: dict[str, ModuleInfo] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form documented in the README."""
        return {
            "model": self.model,
            "inputs": [i.to_dict() for i in self.inputs],
            "device": self.device,
            "dtype": self.dtype,
            "layers": [layer.to_dict() for layer in self.layers],
            "total": self.total.to_dict(),
            "unsupported": dict(self.unsupported),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Rebuild a report from its JSON form (for rendering or comparing saved reports)."""
        total = d["total"]
        return cls(
            model=d["model"],
            inputs=tuple(InputInfo(i.get("name"), tuple(i["shape"]), i["dtype"]) for i in d.get("inputs", ())),
            device=d.get("device", "cpu"),
            dtype=d.get("dtype", "float32"),
            layers=tuple(LayerCost.from_dict(x) for x in d["layers"]),
            total=TotalCost(**{**LayerCost.from_dict(total).__dict__,
                               "trainable_params": total.get("trainable_params", 0)}),
            unsupported=dict(d.get("unsupported", {})),
        )

    def fold(self, depth: int | None) -> Report:
        """Rows folded into the module tree at ``depth`` (0 keeps the total only; None keeps leaf rows).

        A row deeper than ``depth`` is added into its ancestor at that depth, so the rows still add up to the
        total exactly.
        """
        if depth is None:
            return self
        if depth <= 0:
            return replace(self, layers=())
        merged: dict[str, LayerCost] = {}
        for row in self.layers:
            name = row.name if row.name == ROOT else ".".join(row.name.split(".")[:depth])
            if name != row.name:
                info = self.modules.get(name, ModuleInfo(type=name))
                row = replace(row, name=name, type=info.type, input_shape=info.input_shape,
                              output_shape=info.output_shape)
            if name in merged:
                old = merged[name]
                sums = {k: getattr(old, k) + getattr(row, k) for k in COST_FIELDS}
                merged[name] = replace(old, **sums, calls=max(old.calls, row.calls))
                if old.type != row.type and name in self.modules:
                    merged[name] = replace(merged[name], type=self.modules[name].type)
            else:
                merged[name] = row
        return replace(self, layers=tuple(merged.values()))
