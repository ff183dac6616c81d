"""Group sparsity: groups, proximal operators, proximal optimizers, targets and statistics.

Owns which conv weights form channel groups (``groups``) and the coupled groups of removable
channels (``coupled``: ``GroupStructure``, built from the surgeon's dependency graph), groups
that span tensors (``segments``), the group lasso proximal operators (``prox``), the optimizers
that apply them and the ``OPTIMIZERS`` registry (``optim``), the slim MACs a set of dead
channels gives (``macs``), the lambda controller for a MACs / group-sparsity target and the
freezing of dead groups (``control``), the sparsity accounting (``stats``) and its figures
(``plots``, paper Fig. 3 and 4; matplotlib is imported only there). The optimizer owns the
zeros: the proximal step is the last operation of a step and sets whole groups exactly to 0.0.

Training wires it as ``build_optimizer(name, split_param_groups(model, scope, extra), ...)``.

To add a sparsifier that works through the optimizer, subclass ``torch.optim.Optimizer``,
read the ``group_lasso`` / ``layout`` keys of the param groups that ``split_param_groups``
builds (``LAYOUTS`` gives the group dimension of a layout), and register a factory with
``OPTIMIZERS.register(name)`` taking ``(param_groups, *, lr, weight_decay, betas, eps,
momentum, lam, prox)``. Its name becomes a valid ``build_optimizer`` / CLI value.
"""

from mtlexport.sparsity.control import ControllerSettings, SparsityController
from mtlexport.sparsity.coupled import GROUPINGS, GroupStructure, build_structure
from mtlexport.sparsity.groups import (
    LAYOUTS,
    SCOPES,
    GroupedParam,
    classify_conv,
    collect_grouped_params,
    split_param_groups,
)
from mtlexport.sparsity.optim import OPTIMIZERS, PROX_MODES, ProxAdam, ProxSGD, build_optimizer
from mtlexport.sparsity.macs import MacsModel, build_macs_model
from mtlexport.sparsity.prox import group_sum, prox_group_l2, prox_group_l2_uniform, prox_segments
from mtlexport.sparsity.segments import Segments
from mtlexport.sparsity.stats import (
    LayerSparsity,
    SparsityReport,
    layer_sparsity,
    sparsity_report,
    sparsity_report_from_state_dict,
)

__all__ = [
    "GROUPINGS",
    "LAYOUTS",
    "OPTIMIZERS",
    "PROX_MODES",
    "SCOPES",
    "ControllerSettings",
    "GroupStructure",
    "GroupedParam",
    "LayerSparsity",
    "MacsModel",
    "ProxAdam",
    "ProxSGD",
    "Segments",
    "SparsityController",
    "SparsityReport",
    "build_macs_model",
    "build_optimizer",
    "build_structure",
    "classify_conv",
    "collect_grouped_params",
    "group_sum",
    "layer_sparsity",
    "prox_group_l2",
    "prox_group_l2_uniform",
    "prox_segments",
    "sparsity_report",
    "sparsity_report_from_state_dict",
    "split_param_groups",
]
