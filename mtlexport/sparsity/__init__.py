"""Group sparsity: channel groups, proximal operators, proximal optimizers and statistics.

Owns which conv weights form channel groups (``groups``), the group lasso proximal operators
(``prox``), the optimizers that apply them and the ``OPTIMIZERS`` registry (``optim``), and the
sparsity accounting (``stats``) and its figures (``plots``, paper Fig. 3 and 4; matplotlib is
imported only there). The optimizer owns the zeros: the proximal step is the last
operation of a step and sets whole groups exactly to 0.0.

Training wires it as ``build_optimizer(name, split_param_groups(model, scope, extra), ...)``.

To add a sparsifier that works through the optimizer, subclass ``torch.optim.Optimizer``,
read the ``group_lasso`` / ``layout`` keys of the param groups that ``split_param_groups``
builds (``LAYOUTS`` gives the group dimension of a layout), and register a factory with
``OPTIMIZERS.register(name)`` taking ``(param_groups, *, lr, weight_decay, betas, eps,
momentum, lam, prox)``. Its name becomes a valid ``build_optimizer`` / CLI value.
"""

from mtlexport.sparsity.groups import (
    LAYOUTS,
    SCOPES,
    GroupedParam,
    classify_conv,
    collect_grouped_params,
    split_param_groups,
)
from mtlexport.sparsity.optim import OPTIMIZERS, PROX_MODES, ProxAdam, ProxSGD, build_optimizer
from mtlexport.sparsity.prox import group_sum, prox_group_l2, prox_group_l2_uniform
from mtlexport.sparsity.stats import (
    LayerSparsity,
    SparsityReport,
    layer_sparsity,
    sparsity_report,
    sparsity_report_from_state_dict,
)

__all__ = [
    "LAYOUTS",
    "OPTIMIZERS",
    "PROX_MODES",
    "SCOPES",
    "GroupedParam",
    "LayerSparsity",
    "ProxAdam",
    "ProxSGD",
    "SparsityReport",
    "build_optimizer",
    "classify_conv",
    "collect_grouped_params",
    "group_sum",
    "layer_sparsity",
    "prox_group_l2",
    "prox_group_l2_uniform",
    "sparsity_report",
    "sparsity_report_from_state_dict",
    "split_param_groups",
]
