"""portscope: show and control how a machine hands out port numbers.

The public API, flat: everything a library user needs is importable from here.

    import portscope
    facts = portscope.host_facts()                 # ephemeral range, reservations, sysctls
    res = portscope.measure(top=5)                 # pressure per destination, findings
    print(portscope.status(res), res.worst)
    table = portscope.snapshot(("tcp",))           # the live socket table (columnar)
    info = portscope.describe_port(8080)           # class, IANA services, holders
    change = portscope.set_range(40000, 49999, netns="blue", dry_run=True)

Names load on first use (module __getattr__), so `import portscope` stays cheap and the
command line starts fast. No exported name is also a submodule's name (`portscope.suggest`
is the module, `portscope.suggest_ports` the function), so neither can hide the other. docs/api.md documents each name with runnable examples.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BadInput, NotPermitted, PortscopeError, SystemReadError, Unsupported  # noqa: E402

# not `from typing import TYPE_CHECKING`: typing (and ports.py's dataclasses) would cost
# more than the rest of `import portscope` and of `portscope --help` together
TYPE_CHECKING = False

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "PortRange": "ports", "PortSet": "ports", "port_class": "ports", "parse_port": "ports",
    "IANA_DYNAMIC": "ports",
    "host_facts": "host", "HostFacts": "host",
    "Namespace": "netns",
    "discover_namespaces": "namespaces", "NetNamespace": "namespaces",
    "nat_budget": "egress", "measure_egress": "egress",
    "snapshot": "sockets", "SocketTable": "sockets.table",
    "analyze": "pressure", "PressureResult": "pressure", "Destination": "pressure", "GlobalUse": "pressure",
    "measure": "datapath",
    "Finding": "findings", "FINDING_IDS": "findings",
    "status": "check", "evaluate_check": "check", "Check": "check",
    "report_json": "report",
    "describe_port": "portinfo", "PortFacts": "portinfo",
    "suggest_ports": "suggest", "SuggestResult": "suggest",
    "set_range": "settings", "change_reserved": "settings", "Change": "settings",
    "run_simulation": "simulate", "workload": "simulate", "Workload": "simulate",
    "Trend": "trend",
}

__all__ = [
    "__version__",
    # errors (each carries its exit code)
    "PortscopeError", "BadInput", "NotPermitted", "Unsupported", "SystemReadError",
    # port numbers
    "PortRange", "PortSet", "port_class", "parse_port", "IANA_DYNAMIC",
    # the host and its namespaces
    "host_facts", "HostFacts", "Namespace", "discover_namespaces", "NetNamespace",
    # node egress against a cloud NAT's per-destination budget
    "nat_budget", "measure_egress",
    # sockets
    "snapshot", "SocketTable",
    # pressure, forecast, findings, verdicts
    "measure", "analyze", "PressureResult", "Destination", "GlobalUse",
    "Finding", "FINDING_IDS", "status", "evaluate_check", "Check", "report_json", "Trend",
    # one port, and ports for a new server
    "describe_port", "PortFacts", "suggest_ports", "SuggestResult",
    # changes (validated, atomic, read back, rolled back)
    "set_range", "change_reserved", "Change",
    # the allocator simulator
    "run_simulation", "workload", "Workload",
]


def __getattr__(name: str) -> object:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'portscope' has no attribute {name!r}")
    import importlib  # (with warnings) only when a lazy name is asked for: not on the CLI's path
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .check import Check, evaluate_check, status
    from .datapath import measure
    from .egress import measure_egress, nat_budget
    from .findings import FINDING_IDS, Finding
    from .host import HostFacts, host_facts
    from .namespaces import NetNamespace, discover_namespaces
    from .netns import Namespace
    from .portinfo import PortFacts, describe_port
    from .ports import IANA_DYNAMIC, PortRange, PortSet, parse_port, port_class
    from .pressure import Destination, GlobalUse, PressureResult, analyze
    from .report import report_json
    from .settings import Change, change_reserved, set_range
    from .simulate import Workload, run_simulation, workload
    from .sockets import snapshot
    from .sockets.table import SocketTable
    from .suggest import SuggestResult, suggest_ports
    from .trend import Trend
