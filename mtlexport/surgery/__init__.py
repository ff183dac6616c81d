"""Surgery: physically remove the channels a group-sparse model provably does not use.

Stages, one module each, so that each can be replaced or tested alone:

- ``graph``: trace the model with torch-pruning and list every coupled channel group
  (producers, norms, depthwise pass-throughs, ops, consumers) as plain data, each unsupported
  one with the layer or op type that blocks it (``trace``: what the trace needs around
  torch-pruning: nodes it cannot map, the autograd internals of Linear layers on N-D inputs);
- ``analysis``: which channels of a group are dead (every consumer reads them through an
  all-zero weight slice) or foldable constants (``fold_constants``);
- ``policy``: what is actually removed (protected output layers, ``round_to``, one channel
  kept per layer, grouped / unsupported / observable groups kept whole);
- ``remove``: fold constants and prune with torch-pruning (checking each group against the
  analysis, with indices shifted by earlier removals), then check every layer's shapes;
- ``verify``: compare dense and slim outputs (float64) and refuse on any output over ``tol``;
- ``report`` / ``plot``: ``SlimReport`` (with ``GroupSkip``: what blocked which groups) and the
  per-layer channel chart;
- ``slim`` / ``files``: the in-memory entry point and the checkpoint / state-dict ones.
- ``auto`` (``--round-to auto``): widths chosen by measured latency: ``latency`` (per-layer
  lookup tables, cached on disk per backend, CPU and thread count), ``search`` (candidate
  widths per group, coordinate descent on the predicted latency), then a whole-model check
  with the bench runners against every fixed multiple.

Extend: a new layer type needs a role in ``graph._member`` (and a torch-pruning pruner); a new
channel-wise op goes into ``graph.CHANNELWISE_OPS``; anything unknown keeps its group whole.
"""

from mtlexport.surgery.auto import AutoOptions, AutoReport
from mtlexport.surgery.files import (
    STATE_FORMAT,
    build_from_factory,
    default_output,
    load_slim_state_dict,
    slim_checkpoint,
    slim_state_dict,
)
from mtlexport.surgery.report import GroupSkip, LayerChange, SlimReport
from mtlexport.surgery.slim import output_layers, slim_model
from mtlexport.surgery.verify import OutputCheck

__all__ = [
    "STATE_FORMAT",
    "AutoOptions",
    "AutoReport",
    "GroupSkip",
    "LayerChange",
    "OutputCheck",
    "SlimReport",
    "build_from_factory",
    "default_output",
    "load_slim_state_dict",
    "output_layers",
    "slim_checkpoint",
    "slim_model",
    "slim_state_dict",
]
