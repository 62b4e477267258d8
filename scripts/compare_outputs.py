#!/usr/bin/env python3
"""Compare portscope's user-visible output between two checkouts, byte for byte.

    sudo .venv/bin/python scripts/compare_outputs.py OLD_CHECKOUT [NEW_CHECKOUT]

Builds one private network namespace with a known population (a 200-port range, a
listener inside it, connections to two destinations, sockets bound before connect(),
TIME_WAIT and UDP), holds it still, then runs the same commands from both checkouts
(`python -m portscope` with each checkout first on sys.path) and diffs stdout, stderr and
exit codes. Fields that are measurements of the run itself (scrape durations) are masked.
The namespace is always removed. Used to show that a refactoring changed no output.
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POPULATION = r"""
import socket, sys, time, signal
signal.alarm(120)
keep = []
def listener(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(512); keep.append(l); return l
a, b, inside = listener(5432), listener(8080), listener(40100)
for _ in range(40):
    c = socket.create_connection(("127.0.0.1", 5432)); keep += [c, a.accept()[0]]
for _ in range(6):
    c = socket.socket(); c.bind(("127.0.0.1", 0)); c.connect(("127.0.0.1", 8080)); keep += [c, b.accept()[0]]
for _ in range(5):
    c = socket.create_connection(("127.0.0.1", 8080)); s = b.accept()[0]; c.close(); s.close()
for _ in range(3):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("127.0.0.1", 53)); keep.append(u)
print("READY", flush=True)
sys.stdin.read()
"""

COMMANDS = [
    ["report"], ["report", "--json"], ["pressure", "--json"], ["pressure"],
    ["pressure", "--check", "--warn", "10", "--crit", "90"], ["pressure", "--check", "--json"],
    ["conns", "--json"], ["conns"], ["conns", "--count"], ["range", "--json"], ["range"],
    ["port", "40100"], ["port", "40100", "--json"], ["suggest", "--json", "--seed", "1"],
    ["exporter", "--json"], ["reserve", "list", "--json"], ["range", "set", "40000", "40001", "--dry-run"],
    ["range", "set", "abc", "1"], ["reserve", "add", "40100", "--dry-run"],
]
MASK = [(re.compile(r'("portscope_scrape_duration_seconds": \[\s*\{\s*"labels": \{[^}]*\},\s*"value": )[0-9.e-]+'),
         r"\1<t>"),
        (re.compile(r"(portscope_scrape_duration_seconds\{[^}]*\} )[0-9.e-]+"), r"\1<t>")]


def run(checkout: str, ns: str, args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=checkout, COLUMNS="120")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "portscope", *args],
                       capture_output=True, text=True, env=env, timeout=120, cwd="/")
    out = f"exit {p.returncode}\n--- stdout\n{p.stdout}--- stderr\n{p.stderr}"
    for rx, sub in MASK:
        out = rx.sub(sub, out)
    return out


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (it creates a network namespace)", file=sys.stderr)
        return 2
    old = os.path.abspath(sys.argv[1])
    new = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else HERE
    ns = f"pscmp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    holder = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                        "echo '40000 40199' > /proc/sys/net/ipv4/ip_local_port_range"], check=True)
        holder = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", POPULATION],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "READY"
        time.sleep(0.2)
        diffs = 0
        for args in COMMANDS:
            a, b = run(old, ns, args), run(new, ns, args)
            a = a.replace(ns, "<ns>")
            b = b.replace(ns, "<ns>")
            if a != b:
                diffs += 1
                print(f"DIFFERS: portscope {' '.join(args)}")
                sys.stdout.writelines(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "old", "new", n=1))
            else:
                print(f"same:    portscope {' '.join(args)}")
        print(f"{len(COMMANDS) - diffs} of {len(COMMANDS)} commands print the same bytes")
        return 1 if diffs else 0
    finally:
        if holder:
            holder.kill()
        subprocess.run(["ip", "netns", "delete", ns])


if __name__ == "__main__":
    sys.exit(main())
