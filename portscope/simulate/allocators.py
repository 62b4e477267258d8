"""Allocator models by name."""
from __future__ import annotations

import random

from ..errors import BadInput
from ..ports import PortRange
from . import alloc_linux, alloc_rfc6056, alloc_udp
from .alloc_base import GLOBAL, SOURCE, TUPLE, Allocator
from .space import PortSpace

ALGORITHMS = ("linux", "linux-bind", "udp", "rfc6056-1", "rfc6056-2", "rfc6056-3",
              "rfc6056-4", "rfc6056-5", "sequential")

# whose ports each model shares (alloc_base); every class's `scope` says the same
SCOPES = {"linux-bind": SOURCE, "udp": GLOBAL}


def scope_of(name: str) -> str:
    """Whose ports algorithm `name` shares: "tuple", "source" or "global" (alloc_base)."""
    return SCOPES.get(name, TUPLE)


def make(name: str, space: PortSpace, rng: random.Random, *, socket_range: PortRange | None = None,
         udp_hash_size: int | None = None) -> Allocator:
    """The allocator model called `name` over `space`; BadInput for an unknown name or an
    option the model does not take."""
    if name == "linux":
        return alloc_linux.LinuxConnect(space, rng, socket_range=socket_range)
    if socket_range is not None:
        raise BadInput("--socket-range (IP_LOCAL_PORT_RANGE) applies to the linux connect() model only")
    if name == "linux-bind":
        return alloc_linux.LinuxBind(space, rng)
    if name == "udp":
        try:
            size = alloc_udp.UDP_HASH_SIZE if udp_hash_size is None else udp_hash_size
            return alloc_udp.UdpAutobind(space, rng, size)
        except ValueError as e:
            raise BadInput(str(e)) from None
    classes = {"rfc6056-1": alloc_rfc6056.Rfc1, "rfc6056-2": alloc_rfc6056.Rfc2,
               "rfc6056-3": alloc_rfc6056.Rfc3, "rfc6056-4": alloc_rfc6056.Rfc4,
               "rfc6056-5": alloc_rfc6056.Rfc5, "sequential": alloc_rfc6056.Sequential}
    if name not in classes:
        raise BadInput(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return classes[name](space, rng)
