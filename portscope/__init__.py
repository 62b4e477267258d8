"""portscope: show and control how a machine hands out port numbers.

The public facade. Heavy modules load on first use so the CLI starts fast.
"""
__version__ = "0.1.0"

from .errors import BadInput, NotPermitted, PortscopeError, Unsupported  # noqa: E402
from .ports import PortRange, PortSet, port_class  # noqa: E402


def host_facts(netns=None):
    """The host's ephemeral range, reserved ports and related sysctls (see host.HostFacts)."""
    from .host import facts
    return facts(netns)


__all__ = [
    "__version__", "BadInput", "NotPermitted", "PortscopeError", "Unsupported",
    "PortRange", "PortSet", "port_class", "host_facts",
]
