"""Remedy commands: the exact command that fixes a finding, where the facts were read.

One place builds every command a finding, `port`, `suggest` or the quiz prints, so they
all run through the same namespace prefix (`Namespace.shell_prefix`), name the namespace
the same way (`Namespace.portscope_args`) and quote it once. Host facts carry the
namespace they were read in (`HostFacts.netns`), so a remedy always targets the place
that was analysed: on the host a Linux change is kept with --persist; in a namespace the
portscope form names the namespace instead (a drop-in under /etc/sysctl.d is applied to
the host's namespace at boot, so a namespace's settings are kept by whatever creates it).
"""
from __future__ import annotations

from .netns import Namespace, parse
from .ports import PortSet

TYPE_CHECKING = False     # not typing's: importing typing would cost `portscope range` a third of the interpreter's start-up
if TYPE_CHECKING:
    from typing import Iterable

    from .host import HostFacts

# <linux/in.h>: defer the port choice of bind(addr, 0) to connect() (Linux 4.2+)
IP_BIND_ADDRESS_NO_PORT = 24


def _ns(netns: "str | Namespace | None") -> Namespace | None:
    return parse(netns) if netns else None


def shell(netns: "str | Namespace | None") -> str:
    """The prefix that runs a shell command inside `netns` ('' on the host), ending in a space."""
    ns = _ns(netns)
    if not ns:
        return ""
    import shlex  # it imports re; only a namespace's commands need quoting
    return shlex.join(ns.shell_prefix()) + " "


def portscope(netns: "str | Namespace | None", args: str) -> str:
    """The `portscope ...` command line that acts on the same namespace."""
    ns = _ns(netns)
    if not ns:
        return f"portscope {args}"
    import shlex
    return f"portscope {shlex.join(ns.portscope_args())} {args}"


def sysctl_command(facts: HostFacts, *assignments: str) -> str:
    """`sysctl -w ...` where the facts were read: on the host, or inside their namespace."""
    return shell(facts.netns) + "sysctl -w " + " ".join(assignments)


def keep_note(facts: HostFacts, portscope_args: str) -> str:
    """How to make a Linux change last: --persist on the host; in a namespace, the portscope
    form names it and keeping the setting is the job of whatever creates the namespace."""
    if facts.netns:
        return (f"  # or: {portscope(facts.netns, portscope_args)}; a namespace keeps it "
                f"only while it exists: persist it in whatever creates the namespace")
    return f"  # persist: portscope {portscope_args} --persist"


def port_list(ports: Iterable[int], sep: str = ", ", limit: int = 10) -> str:
    """At most `limit` ports, then an ellipsis."""
    ports = list(ports)
    s = sep.join(str(p) for p in ports[:limit])
    return s + (f"{sep}..." if len(ports) > limit else "")


def range_command(facts: HostFacts, low: int, high: int) -> str:
    """The command that sets the ephemeral range to low..high on this OS (in the namespace
    the facts were read from)."""
    if facts.os in ("darwin", "freebsd"):
        return f"sysctl -w net.inet.ip.portrange.first={low} net.inet.ip.portrange.last={high}"
    if facts.os == "windows":
        return (f"netsh int ipv4 set dynamic tcp start={low} num={high - low + 1}"
                f" && netsh int ipv4 set dynamic udp start={low} num={high - low + 1}")
    return (sysctl_command(facts, f'net.ipv4.ip_local_port_range="{low} {high}"')
            + keep_note(facts, f"range set {low} {high}"))


def reserve_command(facts: HostFacts, ports: list[int]) -> str:
    """The command that keeps `ports` out of automatic assignment, added to what is reserved."""
    if facts.os == "windows":
        return " && ".join(f"netsh int ipv4 add excludedportrange protocol=tcp startport={p} numberofports=1"
                           for p in ports)
    if facts.os != "linux":
        return f"move the listeners ({port_list(ports)}) below the ephemeral range"
    new = facts.reserved.union(PortSet.of(ports))
    return (sysctl_command(facts, f'net.ipv4.ip_local_reserved_ports="{new}"')
            + keep_note(facts, f"reserve add {port_list(ports, sep=',')}"))


def reserve_add_command(port: int, netns: "str | Namespace | None" = None) -> str:
    """The portscope command that reserves one port, kept across reboots on the host.

    In another namespace the reservation belongs to that namespace, and a sysctl.d
    drop-in (which the host applies at boot) would not reach it: no --persist there.
    """
    if netns:
        return portscope(netns, f"reserve add {port}")
    return f"portscope reserve add {port} --persist"


def wider_range(facts: HostFacts) -> tuple[int, int]:
    """A larger range to suggest: the OS default if the current one is smaller, else
    extend downward to 16384 (different-parity ends, registered ports above most daemons)."""
    cur, dflt = facts.ephemeral, facts.os_default
    if cur.size < dflt.size:
        return dflt.low, dflt.high
    low = min(cur.low, 16384)
    high = 65535 if cur.high < 65535 else cur.high
    if (high - low) % 2 == 0:
        low += 1
    return low, high


def bind_no_port_fix() -> str:
    """The client-side fix for sockets bound before connect()."""
    return (f"in the client, before bind(addr, 0): setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1) "
            f"(Python: s.setsockopt(socket.IPPROTO_IP, {IP_BIND_ADDRESS_NO_PORT}, 1)); or do not bind at all")
