"""Coupled channel groups read off torch-pruning's dependency graph, as plain data.

A *channel group* is one channel dimension shared by several layers: the producers that write
it (convolutions, linear layers, every branch of a residual sum), the batch norms and
element-wise ops it flows through, depthwise convolutions that pass it on, and the consumers
that read it (convolution / linear input slices, through concatenations and flattening).
Nothing here decides what to remove: see ``analysis`` and ``policy``.

Linear layers on channels-last tensors (ConvNeXt MLPs: ``(N, H, W, C)`` in, ``Linear`` over the
last dimension) are ordinary producers / consumers: ``idxs`` index the weight's out dimension
(producer) or in dimension (consumer), which is the tensor's last dimension. Their autograd
internals (view, addmm, t) are ``op`` members with ``inside`` naming the Linear layer. Such a group
is supported only when every layer in it is a Linear (so every member addresses the last
dimension) and the ops between them are element-wise; channels a LayerNorm (or GroupNorm)
normalises over are never removable, since removing one changes the statistics of the others.

A group is *unsupported* (kept whole) when it holds anything else; ``unsupported`` says why in
words and ``blocker`` names the layer or op type, e.g. ``TransposeBackward0`` for a channel
shuffle, or ``ViewBackward0`` for a reshape whose index mapping torch-pruning could not derive
(see ``trace.install_mapping_guard``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.surgery.trace import (
    LinearInternals,
    attach_internals,
    install_mapping_guard,
    linear_internals,
    mark_guarded,
    unmapped,
)

# Ops (autograd node names) that map channel c to channel c, or that torch-pruning re-indexes
# correctly (concatenation along channels, flatten into a linear layer). Anything else in a group
# makes the whole group unsupported: its channels are kept rather than risk a corrupted layer.
CHANNELWISE_OPS = frozenset({
    "ReluBackward0", "HardtanhBackward0", "SiluBackward0", "SigmoidBackward0", "GeluBackward0",
    "LeakyReluBackward0", "EluBackward0", "HardswishBackward0", "HardsigmoidBackward0",
    "TanhBackward0", "CloneBackward0", "AddBackward0", "SubBackward0", "MulBackward0",
    "DivBackward0", "MaxPool2DWithIndicesBackward0", "AvgPool2DBackward0",
    "AdaptiveAvgPool2DBackward0", "AdaptiveMaxPool2DBackward0", "MeanBackward1",
    "ExpandBackward0", "CatBackward0", "ViewBackward0", "ReshapeAliasBackward0",
    "UnsafeViewBackward0", "TBackward0",
})
UPSAMPLE_PREFIX = "Upsample"


@dataclass(frozen=True)
class Member:
    """One layer or op of a channel group and the channel indices it holds.

    ``role`` is one of producer (writes the channels: conv / linear output), consumer (reads
    them: conv / linear input), depthwise (passes channel c to channel c), norm, op (element-wise,
    pooling, concatenation, reshape), output (a model output) or other (unsupported layer).
    ``root_idxs[i]`` is the group channel that ``idxs[i]`` belongs to. ``inside`` names the
    Linear layer whose forward an ``op`` member belongs to (N-D input: view / addmm / t).
    """

    name: str
    role: str
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]
    op: str = ""
    module: Any = field(default=None, compare=False, repr=False)
    fn: Any = field(default=None, compare=False, repr=False)
    inside: str = ""


@dataclass(frozen=True)
class ChannelGroup:
    """A coupled channel dimension of ``width`` channels, rooted at layer ``root``.

    ``unsupported`` names the reason when the group holds a construct the surgeon does not
    handle (its channels are then never removed) and ``blocker`` the type of the layer or op
    that blocked it; ``unmapped`` when torch-pruning's indices for it cannot be trusted (its
    index mapping failed or went out of range: its dead channels cannot even be counted);
    ``grouped`` is set when a grouped
    convolution (1 < groups < channels) reads or writes it; ``observable`` when the channels
    reach a model output directly.
    """

    index: int
    root: str
    width: int
    members: tuple[Member, ...]
    unsupported: str = ""
    grouped: bool = False
    observable: bool = False
    root_module: Any = field(default=None, compare=False, repr=False)
    root_fn: Any = field(default=None, compare=False, repr=False)
    blocker: str = ""
    unmapped: bool = False

    def by_role(self, role: str) -> list[Member]:
        """Members with ``role``."""
        return [m for m in self.members if m.role == role]

    def layer_names(self) -> list[str]:
        """Names of the real layers (not ops) in the group."""
        return [m.name for m in self.members if m.role in ("producer", "consumer", "depthwise", "norm")]


def build_graph(model: nn.Module, example: Tensor) -> tuple[Any, set[Any]]:
    """Trace ``model`` (eval mode, gradients on) into a torch-pruning ``DependencyGraph``.

    Returns the graph and the autograd nodes of the model's outputs (channels that reach an
    output without passing a consumer are observable and never removed). Nodes torch-pruning
    cannot map are recorded on the graph (``trace.unmapped``), not raised.
    """
    import torch_pruning as tp

    install_mapping_guard()
    internals = LinearInternals()

    outputs: list[Tensor] = []

    def forward(mod: nn.Module, x: Tensor) -> Any:
        out = mod(x)
        outputs.extend(_flatten_tensors(out))
        return out

    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings(), internals.recording(model):
            warnings.simplefilter("ignore")
            dg = tp.DependencyGraph()
            mark_guarded(dg)
            dg.build_dependency(model, example_inputs=example, forward_fn=forward, verbose=False)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    attach_internals(dg, internals)
    return dg, {t.grad_fn for t in outputs if t.grad_fn is not None}


def coupled_groups(dg: Any, model: nn.Module, output_fns: set[Any]) -> list[ChannelGroup]:
    """Every coupled channel group of the traced model, each listed once, with full indices."""
    from torch_pruning import ops

    names = {mod: name for name, mod in model.named_modules()}
    names.update({param: name for name, param in model.named_parameters()})
    internals = linear_internals(dg)
    covered: set[tuple[int, bool]] = set()
    groups: list[ChannelGroup] = []
    for module, node in list(dg.module2node.items()):
        if node.type not in (ops.OPTYPE.CONV, ops.OPTYPE.LINEAR, ops.OPTYPE.DEPTHWISE_CONV):
            continue
        if (id(module), True) in covered:
            continue
        pruner = dg.get_pruner_of_module(module)
        width = pruner.get_out_channels(module)
        if not width:
            continue
        tp_group = dg.get_pruning_group(module, pruner.prune_out_channels, list(range(width)))
        members = [_member(dg, item, names, internals) for item in tp_group]
        for item, mem in zip(tp_group, members):
            if mem.role in ("producer", "depthwise", "norm"):
                covered.add((id(item.dep.target.module), True))
        reason, blocker, bad_idxs = _unsupported(dg, tp_group, members, width, internals)
        grouped = any(_is_grouped(m.module) for m in members if m.role in ("producer", "consumer"))
        observable = any(m.role == "output" for m in members) or any(
            item.dep.target.grad_fn in output_fns and m.role in ("producer", "depthwise", "norm", "op")
            for item, m in zip(tp_group, members)
        )
        groups.append(ChannelGroup(
            index=len(groups), root=names.get(module, type(module).__name__), width=width,
            members=tuple(members), unsupported=reason, grouped=grouped, observable=observable,
            root_module=module, root_fn=tp_group[0].dep.handler, blocker=blocker, unmapped=bad_idxs,
        ))
    return groups


def _member(dg: Any, item: Any, names: dict[Any, str], internals: LinearInternals) -> Member:
    from torch_pruning import ops

    node, fn = item.dep.target, item.dep.handler
    kind = node.type
    if kind == ops.OPTYPE.OUTPUT:
        role = "output"
    elif kind == ops.OPTYPE.DEPTHWISE_CONV:
        role = "depthwise"
    elif kind in (ops.OPTYPE.CONV, ops.OPTYPE.LINEAR) and isinstance(node.module, (nn.Conv2d, nn.Linear)):
        role = "producer" if dg.is_out_channel_pruning_fn(fn) else "consumer"
    elif kind == ops.OPTYPE.BN and isinstance(node.module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        role = "norm"
    elif kind in (ops.OPTYPE.ELEMENTWISE, ops.OPTYPE.CONCAT, ops.OPTYPE.RESHAPE, ops.OPTYPE.EXPAND):
        role = "op"
    else:
        role = "other"
    op = node.grad_fn.name() if node.grad_fn is not None and hasattr(node.grad_fn, "name") else ""
    name = names.get(node.module, f"<{op or type(node.module).__name__}>")
    owner = internals.inside.get(node.grad_fn) if role == "op" else None
    return Member(name=name, role=role, idxs=tuple(int(i) for i in item.idxs),
                  root_idxs=tuple(int(i) for i in item.root_idxs), op=op, module=node.module, fn=fn,
                  inside=names.get(owner, type(owner).__name__) if owner is not None else "")


def _unsupported(dg: Any, tp_group: Any, members: list[Member], width: int,
                 internals: LinearInternals) -> tuple[str, str, bool]:
    """(why the group is kept whole, the blocking layer / op type, whether its indices are
    untrustworthy), or two empty strings and False."""
    failed = unmapped(dg)
    for item, mem in zip(tp_group, members):
        if item.dep.target in failed:
            op = mem.op or type(mem.module).__name__
            return (f"torch-pruning cannot map channel indices through {op} ({failed[item.dep.target]} in its "
                    "index mapping; e.g. a channel shuffle)", op, True)
    for mem in members:
        kind = mem.op or type(mem.module).__name__
        if any(not 0 <= r < width for r in mem.root_idxs):
            return f"inconsistent index mapping at {mem.name}", kind, True
        limit = _channel_count(mem)
        if limit is not None and any(not 0 <= i < limit for i in mem.idxs):
            return f"index out of range at {mem.name}", kind, True
    reason, blocker = _blocking(tp_group, members, internals)
    return reason, blocker, False


def _blocking(tp_group: Any, members: list[Member], internals: LinearInternals) -> tuple[str, str]:
    from torch_pruning import ops

    for mem in members:  # the most telling reason first: a norm over the channels
        if mem.role == "other" and isinstance(mem.module, (nn.LayerNorm, nn.GroupNorm)):
            return _other_layer(mem)
    channels_last = [m for m in members if m.role in ("producer", "consumer") and m.module in internals.nd_input]
    for item, mem in zip(tp_group, members):
        node = item.dep.target
        if mem.role == "other":
            return _other_layer(mem)
        if mem.role == "op" and not mem.inside and not _channelwise(node):
            return f"unsupported op {mem.op or type(mem.module).__name__}", mem.op or type(mem.module).__name__
        if node.type == ops.OPTYPE.CONCAT and getattr(node.module, "offsets", None) is None:
            return "concatenation whose channel offsets could not be inferred", mem.op or "CatBackward0"
    if channels_last:
        return _channels_last_problem(members, channels_last[0])
    return "", ""


def _other_layer(mem: Member) -> tuple[str, str]:
    kind = type(mem.module).__name__
    if isinstance(mem.module, (nn.LayerNorm, nn.GroupNorm)):
        return f"{mem.name} ({kind}) normalises over these channels", kind
    if isinstance(mem.module, nn.Parameter):
        return f"parameter {mem.name} outside any layer acts on these channels", "Parameter"
    return f"unsupported layer {mem.name} ({kind})", kind


# Ops that keep a channels-last tensor's last dimension where it is (element-wise, same shape).
_CHANNELS_LAST_OPS = frozenset({
    "ReluBackward0", "HardtanhBackward0", "SiluBackward0", "SigmoidBackward0", "GeluBackward0",
    "LeakyReluBackward0", "EluBackward0", "HardswishBackward0", "HardsigmoidBackward0",
    "TanhBackward0", "CloneBackward0", "AddBackward0", "SubBackward0", "MulBackward0", "DivBackward0",
})


def _channels_last_problem(members: list[Member], first: Member) -> tuple[str, str]:
    """A group with a Linear on an N-D input is exact only if every layer addresses the last dim."""
    for mem in members:
        if mem.role in ("producer", "consumer", "depthwise", "norm") and not isinstance(mem.module, nn.Linear):
            kind = type(mem.module).__name__
            return (f"{first.name} (Linear on a channels-last tensor) shares these channels with {mem.name} "
                    f"({kind}), which holds them in another dimension", kind)
        if mem.role == "op" and not mem.inside and mem.op not in _CHANNELS_LAST_OPS:
            return (f"{mem.op} between Linear layers on a channels-last tensor may move the channel "
                    f"dimension", mem.op)
    return "", ""


def _channelwise(node: Any) -> bool:
    fn = node.grad_fn
    name = fn.name() if fn is not None and hasattr(fn, "name") else ""
    if name.startswith(UPSAMPLE_PREFIX):
        return True
    if name not in CHANNELWISE_OPS:
        return False
    if name == "MeanBackward1":
        ndim = len(fn._saved_self_sym_sizes)
        dims = {(d - 2**64 if d >= 2**63 else d) % ndim for d in fn._saved_dim}
        return 1 not in dims and ndim >= 3
    if name == "CatBackward0":
        dim = fn._saved_dim
        return dim == 1 or (dim >= 2**63 and dim - 2**64 == -3)
    return True


def _channel_count(mem: Member) -> int | None:
    mod = mem.module
    if mem.role == "consumer":
        return mod.in_channels if isinstance(mod, nn.Conv2d) else mod.in_features
    if mem.role in ("producer", "depthwise"):
        return mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
    if mem.role == "norm":
        return mod.num_features
    return None


def _is_grouped(mod: Any) -> bool:
    return isinstance(mod, nn.Conv2d) and 1 < mod.groups and not (mod.groups == mod.in_channels == mod.out_channels)


def _flatten_tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flatten_tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flatten_tensors(v)]
    return []

