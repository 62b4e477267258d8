"""The census read of `--all-netns` (netlink.read_table(census=True)): the not-AUTO walk is
skipped only when the kernel's own socket count proves it empty, and the table is the
same as the two-walk read's either way. Ground truth: `ss` inside a private namespace
made here (and removed), and the two-walk read itself."""
from __future__ import annotations

import pytest

from conftest import needs_netns, stop_process

pytestmark = needs_netns

# a listener outside the default range (5000) and one IPv6 listener, 5 held connections
# and 2 closed ones (TIME_WAIT), a bound-only socket and, with "explicit", a connection
# from a port bound by number inside the default range (the kernel's AUTO test says no)
SOCKETS = r"""
import socket, sys, time
explicit = sys.argv[1] == "1"
keep = []
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 5000)); srv.listen(64); keep.append(srv)
# the ports bound by number first: a connect() below may draw 40001 or 40002 from the range
b = socket.socket(); b.bind(("127.0.0.1", 40001)); keep.append(b)
if explicit:
    e = socket.socket(); e.bind(("127.0.0.1", 40002)); e.connect(("127.0.0.1", 5000)); keep += [e, srv.accept()[0]]
for i in range(7):
    c = socket.create_connection(("127.0.0.1", 5000)); a = srv.accept()[0]
    if i >= 5:
        c.close(); a.close()
    else:
        keep += [c, a]
s6 = socket.socket(socket.AF_INET6); s6.bind(("::1", 5001)); s6.listen(5); keep.append(s6)
c6 = socket.create_connection(("::1", 5001)); keep += [c6, s6.accept()[0]]
print("ready", flush=True)
time.sleep(300)
"""

COLUMNS = ("proto", "family", "state", "local_addr", "remote_addr", "local_port", "remote_port",
           "uid", "inode", "auto_bound")


def _read(name: str, census: bool, monkeypatch) -> tuple[dict, int, int | None]:
    from portscope import host, pressure
    from portscope.netns import entered
    from portscope.sockets import netlink as nl
    walks = []
    real = nl.dump_batches

    def counted(sock, family, proto, *rest):
        if proto == nl.PROTO_CODES["tcp"]:
            walks.append(family)
        return real(sock, family, proto, *rest)
    monkeypatch.setattr(nl, "dump_batches", counted)
    # the census saves one of sock_diag's two walks; the read without it would otherwise
    # go through the BPF TCP iterator (one walk of its own), so both reads here are sock_diag's
    monkeypatch.setenv("PORTSCOPE_TCP_READER", "sock_diag")
    facts = host.host_facts(name)
    with entered(name):
        t = nl.read_table(pressure.SNAPSHOT_PROTOS, (4, 6), pressure.READ_STATES, facts.ephemeral,
                          auto=True, model_auto=True, census=census)
        inuse = nl.tcp_in_use()
    monkeypatch.undo()
    return {c: list(getattr(t, c)) for c in COLUMNS}, len(walks), inuse


@pytest.mark.parametrize("explicit", [False, True])
def test_census_read_equals_the_two_walk_read(netns, monkeypatch, explicit):
    p = netns.start(SOCKETS, "1" if explicit else "0")
    try:
        two, walks_two, inuse = _read(netns.name, False, monkeypatch)
        one, walks_one, _ = _read(netns.name, True, monkeypatch)
        full = [r for r in netns.ss("-tan") if r[0] not in ("TIME-WAIT", "SYN-RECV")]
    finally:
        stop_process(p)
    assert one == two
    # the kernel's count is what ss lists, less TIME_WAIT and request sockets
    assert inuse == len(full) == (16 if explicit else 14)
    rows = list(zip(two["local_port"], two["auto_bound"], two["state"]))
    from portscope.sockets.table import AUTO_NO
    assert ((40002, AUTO_NO, 1) in rows) is explicit
    # the explicitly bound connection is one the first walk leaves out: the second runs
    assert (walks_two, walks_one) == ((2, 2) if explicit else (2, 1))
