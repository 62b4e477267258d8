"""`port N`'s socket read (portinfo.bound_sockets) in a namespace made here: one port asks
the kernel with a plain walk first and reads the classified rows only when that port has
sockets; the rows must be those of the classified read, whatever the port holds."""
from __future__ import annotations

import pytest

from conftest import Driver


def _walks(monkeypatch) -> list:
    from portscope.sockets import netlink as nl
    walks: list = []
    real = nl.dump_chunks

    def counted(sock, family, proto, states, bc, *rest):
        walks.append((family, proto, states, bc))
        return real(sock, family, proto, states, bc, *rest)
    monkeypatch.setattr(nl, "dump_chunks", counted)
    return walks


def _full(ns: str, port: int) -> list[dict]:
    from portscope.ports import PortRange
    from portscope.sockets import snapshot
    t = snapshot(protos=("tcp", "udp"), sport=PortRange(port, port), netns=ns)
    return sorted((t.row(i) for i in range(len(t)) if t.local_port[i] == port), key=repr)


@pytest.mark.netns
def test_one_port_rows_equal_the_classified_read(netns, monkeypatch):
    from portscope.portinfo import bound_sockets
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    drive = Driver(netns)
    try:
        drive(op="listen", port=40050)
        assert drive(op="open", dests=[["127.0.0.1", 40050]], n=3)["opened"] == [3]
        assert drive(op="open", dests=[["127.0.0.1", 40050]], mode="bind", n=2)["opened"] == [2]
        assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=2)["opened"] == [2]
        clients = sorted(int(r[3].rsplit(":", 1)[1]) for r in netns.ss("-tn", "dport", "=", ":40050"))
        udp = sorted(int(r[3].rsplit(":", 1)[1]) for r in netns.ss("-uan"))
        assert len(clients) == 5 and len(udp) == 2
        free = next(p for p in range(40000, 40100) if p not in clients + udp + [40050])
        # the listener with the 5 connections it accepted; a client; a bound client; UDP; none.
        # TCP and UDP draw from one range, so a UDP port may equal a TCP one: count both.
        def held(port: int) -> int:
            return 6 * (port == 40050) + clients.count(port) + udp.count(port)
        for port in [40050, clients[0], clients[-1], udp[0], free]:
            n = held(port)
            walks = _walks(monkeypatch)
            got, backend = bound_sockets([port], netns.name, protos=("tcp", "udp"))
            monkeypatch.undo()
            assert backend == "netlink"
            rows = sorted(got[port], key=repr)
            assert rows == _full(netns.name, port) and len(rows) == n, (port, rows)
            # ground truth: ss sees the same sockets on that local port
            seen = netns.ss("-tuan", "sport", "=", f":{port}")
            assert len(seen) == n, (port, seen)
            if n == 0:
                # the plain walks only: TCP (both families at once or one per family) and
                # UDP per family, no AUTO halves (bytecode), no listeners walk
                assert 2 <= len(walks) <= 4 and len({w[:3] for w in walks}) == len(walks), walks
            else:
                assert len(walks) > 4
    finally:
        drive.close()
