"""Who may bind a low port, per platform: the rule `portscope port` and the quiz state.

The rule differs by system, and on macOS by version:

- Linux: ports below net.ipv4.ip_unprivileged_port_start (per network namespace,
  default 1024) need root or CAP_NET_BIND_SERVICE, on every address.
- FreeBSD: ports in [net.inet.ip.portrange.reservedlow, reservedhigh] (default 0-1023)
  need root, on every address. Capabilities are a Linux notion.
- macOS before 10.14: ports below IPPORT_RESERVED (1024) need root.
- macOS 10.14 (Darwin 18) and later: the same ports are free for any user on the
  wildcard address (0.0.0.0 / ::); binding them to a specific address still needs root.
- Windows: no port number needs privilege (unprivileged_port_start 0).
"""
from __future__ import annotations

from .value import Frozen

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from .host import HostFacts

ANY, WILDCARD, ROOT = "any address", "wildcard only", "root only"


class PrivilegeRule(Frozen):
    """Which ports need privilege to bind on one system, and who may bind them."""

    __slots__ = ("os", "low", "start", "wildcard_free")
    os: str
    low: int                  # first privileged port (FreeBSD reservedlow; 0 elsewhere)
    start: int                # first unprivileged port above the privileged window
    wildcard_free: bool       # macOS 10.14+: the window applies to specific addresses only

    def __init__(self, os: str, low: int, start: int, wildcard_free: bool) -> None:
        self._init(os=os, low=low, start=start, wildcard_free=wildcard_free)

    @property
    def who(self) -> str:
        """Who may bind a privileged port, in this system's own terms."""
        return "root or CAP_NET_BIND_SERVICE" if self.os == "linux" else \
            "Administrator" if self.os == "windows" else "root"

    @property
    def boundary(self) -> str:
        """The setting (or constant) that draws the line, as a learner can look it up."""
        if self.os == "linux":
            return f"net.ipv4.ip_unprivileged_port_start={self.start}"
        if self.os == "freebsd":
            return (f"net.inet.ip.portrange.reservedlow={self.low} and "
                    f"reservedhigh={self.start - 1}" if self.start else "net.inet.ip.portrange.reservedhigh")
        if self.os == "darwin":
            return f"the fixed IPPORT_RESERVED boundary {self.start}"
        return "no privileged ports"

    def in_window(self, port: int) -> bool:
        """Is `port` in the privileged window (whatever the address)?"""
        return self.low <= port < self.start

    def needs_privilege(self, port: int, wildcard: bool = False) -> bool:
        """Does binding `port` need privilege (on the wildcard address if `wildcard`)?"""
        return self.in_window(port) and not (wildcard and self.wildcard_free)

    def who_may_bind(self, port: int) -> str:
        """ANY: anyone on any address; WILDCARD: anyone on 0.0.0.0/::, root on a specific
        address; ROOT: only a privileged process, on any address."""
        if not self.in_window(port):
            return ANY
        return WILDCARD if self.wildcard_free else ROOT

    def note(self, port: int, allowed: bool | None = None) -> str:
        """One sentence for `portscope port`: why binding `port` needs privilege here."""
        if self.os == "linux":
            return (f"below ip_unprivileged_port_start={self.start}: binding needs root or CAP_NET_BIND_SERVICE"
                    + ("" if allowed is None else "; this process has it" if allowed
                       else "; this process does not have it"))
        if self.wildcard_free:
            return (f"below {self.start} (IPPORT_RESERVED): since macOS 10.14 any user may bind it on the "
                    f"wildcard address (0.0.0.0 or ::), but binding it to a specific address needs root")
        where = "between reservedlow and reservedhigh" if self.os == "freebsd" else f"below {self.start}"
        return (f"{where} ({self.boundary}): binding needs root"
                + ("" if allowed is None else "; this process is root" if allowed
                   else "; this process is not root"))


def rule(facts: HostFacts) -> PrivilegeRule:
    """The privileged-port rule of the system `facts` describe (a host.HostFacts)."""
    return PrivilegeRule(os=facts.os, low=getattr(facts, "privileged_low", 0) or 0,
                         start=facts.unprivileged_port_start,
                         wildcard_free=bool(getattr(facts, "wildcard_bind_unprivileged", False)))


__all__ = ["PrivilegeRule", "rule", "ANY", "WILDCARD", "ROOT"]
