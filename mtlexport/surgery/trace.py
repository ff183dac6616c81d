"""What the torch-pruning trace needs around it: a guard on its index mapping, Linear internals.

- torch-pruning re-derives the index mapping of every concatenation / split / reshape node each
  time a group is built. Some reshapes it cannot map (a channel shuffle's ``view`` to 5-D makes it
  divide by zero). ``install_mapping_guard`` wraps those per-node functions once: on a graph built
  by ``graph.build_graph`` a failing node is recorded in ``unmapped(dg)`` (node -> exception name)
  and its mapping left unset, so every group through it is reported unsupported instead of the
  whole trace dying. Graphs built elsewhere see the original behaviour, errors included.
- A Linear layer on an N-D (channels-last) input runs as view -> addmm -> view in autograd;
  torch-pruning records only the last view as the layer and sees the rest as separate ops.
  ``LinearInternals`` records, per Linear call, the autograd nodes strictly inside its forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

_UNMAPPED_ATTR = "_mtlexport_unmapped"
_LINEAR_ATTR = "_mtlexport_linear"
# Failures of torch-pruning's index arithmetic on a node it cannot map.
_MAPPING_ERRORS = (ArithmeticError, IndexError, KeyError, TypeError, ValueError, AttributeError)
_installed = False


def install_mapping_guard() -> None:
    """Wrap torch-pruning's per-node index-mapping updates (idempotent)."""
    global _installed
    if _installed:
        return
    from torch_pruning.dependency import index_mapping

    for name in dir(index_mapping):
        if name.startswith("update_") and name.endswith("_index_mapping") and name != "update_index_mapping":
            fn = getattr(index_mapping, name)
            if callable(fn):
                setattr(index_mapping, name, _guarded(fn))
    _installed = True


def _guarded(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(fn)
    def update(graph: Any, node: Any) -> Any:
        try:
            return fn(graph, node)
        except _MAPPING_ERRORS as exc:
            failures = getattr(graph, _UNMAPPED_ATTR, None)
            if failures is None:
                raise
            failures[node] = type(exc).__name__
            return None

    return update


def mark_guarded(dg: Any) -> None:
    """Make ``dg`` record unmappable nodes instead of raising."""
    setattr(dg, _UNMAPPED_ATTR, {})


def unmapped(dg: Any) -> dict[Any, str]:
    """Nodes of ``dg`` whose index mapping torch-pruning could not derive (node -> exception name)."""
    return getattr(dg, _UNMAPPED_ATTR, {})


def attach_internals(dg: Any, internals: LinearInternals) -> None:
    """Keep the Linear internals recorded while tracing ``dg`` with it."""
    setattr(dg, _LINEAR_ATTR, internals)


def linear_internals(dg: Any) -> LinearInternals:
    """The Linear internals recorded for ``dg`` (empty for a graph built elsewhere)."""
    return getattr(dg, _LINEAR_ATTR, None) or LinearInternals()


class LinearInternals:
    """Forward hooks on every Linear layer recording the autograd nodes inside its forward.

    ``inside[grad_fn] = linear`` for each such node (the layer's output node excluded);
    ``nd_input`` holds the Linear layers called on an input of more than two dimensions.
    """

    def __init__(self) -> None:
        self.inside: dict[Any, nn.Linear] = {}
        self.nd_input: set[nn.Linear] = set()

    @contextmanager
    def recording(self, model: nn.Module) -> Iterator[LinearInternals]:
        handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.Linear)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if not isinstance(output, Tensor) or output.grad_fn is None or not inputs or not isinstance(inputs[0], Tensor):
            return
        x = inputs[0]
        if x.dim() > 2:
            self.nd_input.add(module)
        stop = x.grad_fn
        stack = [fn for fn, _ in output.grad_fn.next_functions if fn is not None]
        seen: set[int] = set()
        while stack:
            fn = stack.pop()
            if fn is stop or id(fn) in seen or not hasattr(fn, "next_functions"):
                continue
            seen.add(id(fn))
            if type(fn).__name__ == "AccumulateGrad":
                continue
            self.inside[fn] = module
            stack.extend(f for f, _ in fn.next_functions if f is not None)
