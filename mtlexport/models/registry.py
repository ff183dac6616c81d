"""Registries of backbone and head factories (keys double as spec and CLI values)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mtlexport.registry import Registry

BackboneFactory = Callable[..., nn.Module]
HeadFactory = Callable[..., nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
HEADS: Registry[HeadFactory] = Registry("head")
