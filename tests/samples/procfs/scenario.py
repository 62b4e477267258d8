"""Every kind of socket the socket table must see; run INSIDE a private network namespace.

Used by tests/test_sockets_live.py (ground truth against ss) and by record.sh (the
recorded /proc/net samples next to this file). Prints "READY" once everything is
in place, then holds the sockets until stdin closes (or 600 s pass). Unless run
with --record, a new TIME_WAIT appears every 20 s (each lasts 60 s), so readers
must compare snapshots taken while nothing changed (see World.stable in the tests).

  listener v4 127.0.0.1:8080, dual-stack listener [::]:9090
  established pairs v4, v6 (::1) and v4-mapped (v4 client -> [::]:9090)
  bind-before-connect client 127.0.0.1:40001 -> 8080 (explicit port: not auto-bound)
  TIME_WAIT (client closed first), FIN_WAIT2 + CLOSE_WAIT (server never closes)
  SYN_SENT: a listener with backlog 0 whose accept queue is full drops new SYNs
  SYN_RECV: a raw SYN to 10.9.9.1:8443 from 10.9.9.2, an address nobody owns on a
            veth pair, so the SYN-ACK is never answered; lasts about a minute
            (tcp_synack_retries); skipped without veth
  UDP: connected v4, unconnected auto-bound v4, unconnected [::1]:5353, v6 connected
       to a v4-mapped peer; UDP-Lite unconnected when the kernel has it
"""
import signal
import socket
import struct
import subprocess
import sys
import time

signal.alarm(600)
keep = []
# this namespace's own sysctls: keep SYN_SENT / SYN_RECV alive for minutes, not ~1
for key, value in (("tcp_syn_retries", "10"), ("tcp_synack_retries", "10")):
    try:
        with open(f"/proc/sys/net/ipv4/{key}", "w") as f:
            f.write(value)
    except OSError:
        pass


def pair(listener, family, addr):
    c = socket.socket(family)
    c.connect(addr)
    a, _ = listener.accept()
    keep.extend((c, a))
    return c, a


l4 = socket.socket()
l4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l4.bind(("127.0.0.1", 8080))
l4.listen(64)
l6 = socket.socket(socket.AF_INET6)
l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
l6.bind(("::", 9090))
l6.listen(64)
keep += [l4, l6]

# bound by number before any connect(), which draws from the same (default) range and
# could otherwise take 40001 first
b = socket.socket()
b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
b.bind(("127.0.0.1", 40001))

pair(l4, socket.AF_INET, ("127.0.0.1", 8080))
pair(l6, socket.AF_INET6, ("::1", 9090))
pair(l6, socket.AF_INET, ("127.0.0.1", 9090))            # server side is v4-mapped

b.connect(("127.0.0.1", 8080))
keep += [b, l4.accept()[0]]

c, a = socket.create_connection(("127.0.0.1", 8080)), None
a, _ = l4.accept()
c.close()                                                 # client first: TIME_WAIT
a.close()

c, a = pair(l4, socket.AF_INET, ("127.0.0.1", 8080))
c.shutdown(socket.SHUT_WR)                                # client FIN_WAIT2, server CLOSE_WAIT

full = socket.socket()
full.bind(("127.0.0.1", 7000))
full.listen(0)
keep.append(full)
for _ in range(3):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", 7000))
    except BlockingIOError:
        pass
    keep.append(s)
    time.sleep(0.05)


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def raw_syn(src: str, sport: int, dst: str, dport: int) -> None:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 12345, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    r.sendto(ip + tcp, (dst, 0))
    r.close()


try:
    # a veth pair in this namespace; nobody owns 10.9.9.2, so SYN-ACKs to it go unanswered
    for cmd in (["ip", "link", "add", "psva", "type", "veth", "peer", "name", "psvb"],
                ["ip", "addr", "add", "10.9.9.1/24", "dev", "psva"],
                ["ip", "link", "set", "psva", "up"], ["ip", "link", "set", "psvb", "up"],
                # a fixed neighbour: no ARP failure, so no ICMP error that would drop the request
                ["ip", "neigh", "replace", "10.9.9.2", "lladdr", "02:00:00:00:00:02", "dev", "psva",
                 "nud", "permanent"]):
        subprocess.run(cmd, check=True, capture_output=True)
    lr = socket.socket()
    lr.bind(("10.9.9.1", 8443))
    lr.listen(8)
    keep.append(lr)
    time.sleep(0.2)
    raw_syn("10.9.9.2", 45678, "10.9.9.1", 8443)
except (OSError, subprocess.CalledProcessError):
    pass

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", 53))
keep.append(u)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
keep.append(u)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(("::1", 5353))
keep.append(u)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.connect(("::ffff:127.0.0.1", 5353))
keep.append(u)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)   # IPPROTO_UDPLITE
    u.bind(("127.0.0.1", 0))
    keep.append(u)
except OSError:
    pass



def time_wait_forever():
    # TIME_WAIT lasts 60 s; a fresh one every 20 s keeps at least one around
    while True:
        time.sleep(20)
        c = socket.create_connection(("127.0.0.1", 8080))
        a, _ = l4.accept()
        c.close()
        a.close()


if "--record" not in sys.argv:
    import threading
    threading.Thread(target=time_wait_forever, daemon=True).start()
time.sleep(0.2)        # let the SYN-ACK / FIN exchanges settle
print("READY", flush=True)
sys.stdin.read()
