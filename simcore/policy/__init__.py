"""rmap policies, registered by name: ``eager`` (mainline 6.18) and later designs.

Each policy is registered once in simcore.registry (group ``policy``) with its class and
its variant schema (knob -> (allowed values, default)); a plugin module registers its own
the same way."""
from __future__ import annotations

from ..registry import PolicyConf, RegistryError, lookup, names, register
from .base import Policy
from .cow_context import VARIANTS as COW_VARIANTS
from .cow_context import CowContextPolicy
from .eager import Eager
from .lazy import VARIANTS as LAZY_VARIANTS
from .lazy import Lazy

register("policy", "eager", PolicyConf, Eager)
register("policy", "lazy", PolicyConf, Lazy, LAZY_VARIANTS)
register("policy", "cow_context", PolicyConf, CowContextPolicy, COW_VARIANTS)


def make_policy(name: str, **variant: object) -> Policy:
    """Instantiate a registered policy by name; unknown names and knobs raise ValueError."""
    try:
        cls = lookup("policy", name).make
    except RegistryError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(names('policy'))})") from None
    return cls(**variant)


__all__ = ["Policy", "make_policy"]
