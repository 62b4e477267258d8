"""`port N`'s socket read (portinfo.bound_sockets) in a namespace made here: one port asks
the kernel with a plain walk first (portprobe, without the socket table) and reads the
classified rows only when that port has sockets; the rows must be those of the classified
read, whatever the port holds, and the probe's answer that of the table's plain read."""
from __future__ import annotations

import os

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


def _probes(monkeypatch) -> list:
    from portscope import portprobe
    sent: list = []
    real = portprobe.request

    def counted(family, proto, port, seq):
        sent.append((family, proto, port))
        return real(family, proto, port, seq)
    monkeypatch.setattr(portprobe, "request", counted)
    return sent


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
            walks, probes = _walks(monkeypatch), _probes(monkeypatch)
            got, backend = bound_sockets([port], netns.name, protos=("tcp", "udp"))
            monkeypatch.undo()
            assert backend == "netlink"
            rows = sorted(got[port], key=repr)
            assert rows == _full(netns.name, port) and len(rows) == n, (port, rows)
            # ground truth: ss sees the same sockets on that local port
            seen = netns.ss("-tuan", "sport", "=", f":{port}")
            assert len(seen) == n, (port, seen)
            # the probe's plain walks: TCP (both families at once) and UDP per family, no
            # AUTO halves (bytecode), no listeners walk; the first reply ends it early
            assert probes and len(probes) <= 3 and len(set(probes)) == len(probes), probes
            assert {p[2] for p in probes} == {port}
            if n == 0:
                assert len(probes) == 3 and walks == [], walks      # no table read at all
            else:
                assert len(walks) > 4
    finally:
        drive.close()


@pytest.mark.netns
def test_probe_answers_as_the_tables_plain_read(netns):
    """portprobe.any_bound against the socket table's plain read (the walks it replaces)
    and `ss`, per protocol, for every port something holds and ports nothing holds."""
    from portscope import portprobe
    from portscope.ports import PortRange
    from portscope.sockets import snapshot
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    drive = Driver(netns)
    try:
        drive(op="listen", port=40050)
        assert drive(op="open", dests=[["127.0.0.1", 40050]], n=3)["opened"] == [3]
        assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=2)["opened"] == [2]
        held = {int(r[4].rsplit(":", 1)[1]) for r in netns.ss("-tuan")}
        # (a UDP port may equal a TCP client's: both draw from one range)
        assert 40050 in held and len(netns.ss("-uan")) == 2 and len(held) >= 4
        for port in sorted(held | {40000, 40099, 0, 65535}):
            for protos in (("tcp", "udp"), ("tcp",), ("udp",)):
                got = portprobe.any_bound(port, protos, netns.name)
                table = snapshot(protos=protos, sport=PortRange(port, port), netns=netns.name, classify=False)
                assert got is (len(table) > 0), (port, protos)
                flag = {("tcp",): "-tan", ("udp",): "-uan"}.get(protos, "-tuan")
                assert got is bool(netns.ss(flag, "sport", "=", f":{port}")), (port, protos)
    finally:
        drive.close()


_BIND_ONLY = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))      # bound: not listening, not connected
print("READY", flush=True); sys.stdin.read()
"""
_TRY_BIND = r"""
import errno, socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1]))); print("bound")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


@pytest.mark.netns
def test_a_port_held_by_a_bound_only_socket_is_in_use(netns, cli):
    """A daemon between bind() and listen() holds its port; `port N` must not call it free.
    Ground truth: the kernel refuses a second bind() to it, and accepts one once it is gone."""
    import json
    import subprocess
    import sys
    port = 41234
    p = subprocess.Popen(["ip", "netns", "exec", netns.name, sys.executable, "-c", _BIND_ONLY, str(port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("READY")
        assert netns.run(sys.executable, "-c", _TRY_BIND, str(port)).stdout.strip() == "EADDRINUSE"
        code, out, _ = cli("port", str(port), "--netns", netns.name, "--json")
        rows = json.loads(out)["in_use"]
        if not rows:
            # BOUND_INACTIVE dumps came with Linux 6.8; older kernels ignore the request
            assert tuple(map(int, os.uname().release.split(".")[:2])) < (6, 8), out
            pytest.skip("this kernel's sock_diag does not report bound-only sockets (Linux < 6.8)")
        assert [(r["proto"], r["state"], r["local_port"]) for r in rows] == [("tcp", "CLOSE", port)]
        code, out, _ = cli("port", str(port), "--netns", netns.name)
        assert "(bound: not listening or connected)" in out and "in use:     no" not in out
    finally:
        p.kill()
        p.wait()
    assert netns.run(sys.executable, "-c", _TRY_BIND, str(port)).stdout.strip() == "bound"
    code, out, _ = cli("port", str(port), "--netns", netns.name, "--json")
    assert json.loads(out)["in_use"] == []
