"""Collectives: which ops move data between ranks, of which kind, and how many bytes each moves.

A collective's ``bytes`` is the size of the whole buffer it works on, the Ψ of the ZeRO paper's volumes: an
all-gather's gathered output, a reduce-scatter's unreduced input, an all-reduce's tensor, a broadcast's tensor. (A
ring moves (N - 1) / N of it in and out of each rank; the report keeps the buffer size, which does not depend on the
algorithm.) Both the ``c10d`` ops that ``torch.distributed`` calls (FSDP2, DDP) and the functional ones
(``_c10d_functional``, DTensor) are covered; ``wait_tensor`` moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from modelprof.counting.formulas import TensorSpec, specs_in


def _nbytes(value: Any) -> int:
    return sum(s.nbytes for s in specs_in(value))


def _first_arg(args: tuple, out: Any) -> int:
    return _nbytes(args[0])


def _second_arg(args: tuple, out: Any) -> int:
    return _nbytes(args[1])


def _output(args: tuple, out: Any) -> int:
    return _nbytes(out[0] if isinstance(out, tuple | list) and not isinstance(out, TensorSpec) else out)


#: op name -> (kind, bytes of the buffer it works on from (args, out), tensors as TensorSpecs)
_C10D: dict[str, tuple[str, Callable[[tuple, Any], int]]] = {
    "_allgather_base_": ("all_gather", _first_arg),  # (output, input, group, ...)
    "allgather_": ("all_gather", _first_arg),  # (output lists, input list, group, ...)
    "allgather_into_tensor_coalesced_": ("all_gather", _first_arg),
    "_reduce_scatter_base_": ("reduce_scatter", _second_arg),  # (output, input, group, op, ...)
    "reduce_scatter_": ("reduce_scatter", _second_arg),
    "reduce_scatter_tensor_coalesced_": ("reduce_scatter", _second_arg),
    "allreduce_": ("all_reduce", _first_arg),
    "allreduce_coalesced_": ("all_reduce", _first_arg),
    "broadcast_": ("broadcast", _first_arg),
    "alltoall_base_": ("all_to_all", _first_arg),
    "send": ("send", _first_arg),
    "recv_": ("recv", _first_arg),
}
_FUNCTIONAL: dict[str, tuple[str, Callable[[tuple, Any], int]]] = {
    "all_gather_into_tensor": ("all_gather", _output),
    "all_gather_into_tensor_coalesced": ("all_gather", _output),
    "reduce_scatter_tensor": ("reduce_scatter", _first_arg),
    "reduce_scatter_tensor_coalesced": ("reduce_scatter", _first_arg),
    "all_reduce": ("all_reduce", _first_arg),
    "all_reduce_coalesced": ("all_reduce", _first_arg),
    "broadcast": ("broadcast", _first_arg),
    "all_to_all_single": ("all_to_all", _first_arg),
}


def _packets() -> dict[Any, tuple[str, Callable[[tuple, Any], int]]]:
    found: dict[Any, tuple[str, Callable[[tuple, Any], int]]] = {}
    for namespace, table in (("c10d", _C10D), ("_c10d_functional", _FUNCTIONAL)):
        ops = getattr(torch.ops, namespace, None)
        for name, entry in table.items():
            try:
                found[getattr(ops, name)] = entry
            except (AttributeError, RuntimeError):  # not in this build (torch without distributed)
                continue
    return found


#: op packet -> (kind, bytes rule): every collective the counting session records.
COLLECTIVES = _packets()


def collective_bytes(rule: Callable[[tuple, Any], int], args: tuple, out: Any) -> int:
    """The bytes a collective works on, from its arguments and output (tensors as TensorSpecs)."""
    return rule(args, out)
