"""The group lasso as a sparsifier: ProxAdam / ProxSGD on coupled channel groups with a MACs or
group-sparsity target (``mtlexport.sparsity.control``).

The training loop already runs this path for ``optimizer.name: proxadam`` configs; this entry
only translates the ``sparsifier`` section into those optimizer settings (``grouping: coupled``,
the target, ``target_at``, the scope), so ``sparsifier.name: group_lasso`` and the methods
compared with it share one config. A config naming ``proxsgd`` keeps it; anything else gets
``proxadam``. Channel structure only: the group lasso removes whole groups by construction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mtlexport.errors import ConfigError
from mtlexport.sparsity.methods.base import SPARSIFIERS, Sparsifier

__all__ = ["GroupLasso"]


@SPARSIFIERS.register("group_lasso")
class GroupLasso(Sparsifier):
    """See the module docstring."""

    name = "group_lasso"
    hooks = False

    @classmethod
    def prepare(cls, config: Any) -> Any:
        sp = config.sparsifier
        if sp.structure != "channel":
            raise ConfigError("the group lasso removes whole channel groups: use sparsifier.structure: channel "
                              "(element-wise sparsity is what disparse and adapmtl offer)")
        if sp.options:
            raise ConfigError(f"sparsifier group_lasso takes no options (got {sorted(sp.options)}); "
                              "set the optimizer section (lambda, prox, freeze_at) instead")
        opt = config.optimizer
        name = opt.name if opt.name in ("proxadam", "proxsgd") else "proxadam"
        opt = replace(opt, name=name, grouping="coupled", target_macs=sp.target_macs,
                      target_group_sparsity=sp.target_sparsity, target_at=sp.target_at,
                      group_scope=sp.scope or opt.group_scope)
        return replace(config, optimizer=opt)
