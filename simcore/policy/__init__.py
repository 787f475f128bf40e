"""rmap policies, registered by name: ``eager`` (mainline 6.18) and later designs."""
from __future__ import annotations

from .base import Policy
from .cow_context import CowContextPolicy
from .eager import Eager
from .lazy import Lazy

POLICIES: dict[str, type[Policy]] = {"eager": Eager, "lazy": Lazy, "cow_context": CowContextPolicy}


def make_policy(name: str, **variant: object) -> Policy:
    """Instantiate a registered policy by name; unknown names raise ValueError."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(sorted(POLICIES))})") from None
    return cls(**variant)


__all__ = ["POLICIES", "Policy", "make_policy"]
