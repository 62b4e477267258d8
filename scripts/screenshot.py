"""Regenerate docs/web.png (and docs/web-phone-dark.png): the exporter's page, taken by
headless Chromium from a real exporter inside a private namespace with a known population.

    sudo .venv/bin/python scripts/screenshot.py [--out docs/web.png]

Needs root (it makes and always removes a network namespace `psshot-*`) and Debian's
chromium. The population: range 40000-40199 with 40190-40194 reserved, listeners on
5432, 6379, 8080 and 40050 (inside the range), 60 connections to :5432, 25 closed ones to
:8080 (TIME_WAIT), and a client opening 4 connections a second to :6379 while the page
refreshes, so the forecast and the history have something to show.
"""
from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from browser import Browser  # noqa: E402  (tests/browser.py: the DevTools-over-a-pipe client)

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")
PORT = 9917
POPULATION = r"""
import socket, sys, time
keep = []
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(512); keep.append(s); return s
listen(5432); redis = listen(6379); web = listen(8080); listen(40050)
for _ in range(60):
    keep.append(socket.create_connection(("127.0.0.1", 5432)))
for _ in range(25):
    c = socket.create_connection(("127.0.0.1", 8080)); a, _ = web.accept(); c.close(); a.close()
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end and len(keep) < 200:      # bounded in time and count
    keep.append(socket.create_connection(("127.0.0.1", 6379)))
    time.sleep(0.25)
sys.stdin.read()
"""


def ns_run(name: str, *cmd: str, **kw):
    return subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, capture_output=True, text=True, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "web.png"), help="PNG to write (laptop width).")
    ap.add_argument("--phone", default=os.path.join(HERE, "..", "docs", "web-phone-dark.png"),
                    help="PNG to write (phone width, dark scheme).")
    ap.add_argument("--wait", type=float, default=16.0, help="Seconds of refreshes before the shot.")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("screenshot.py: error: needs root to make a private network namespace", file=sys.stderr)
        return 3
    name = f"psshot-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    procs = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for k, v in (("ip_local_port_range", "40000 40199"), ("ip_local_reserved_ports", "40190-40194"),
                     ("tcp_tw_reuse", "0")):
            ns_run(name, "sh", "-c", f'printf "%s" "$1" > /proc/sys/net/ipv4/{k}', "sh", v)
        pop = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", POPULATION, str(a.wait + 5)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(pop)
        ready, _, _ = select.select([pop.stdout], [], [], 30)
        if not ready or pop.stdout.readline().strip() != "ready":
            raise SystemExit("screenshot.py: error: the population did not start")
        exp = subprocess.Popen(["ip", "netns", "exec", name, PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{PORT}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(exp)
        time.sleep(1.5)
        with Browser(prefix=["ip", "netns", "exec", name]) as b:
            page = b.page(width=1280, height=900, scheme="light")
            page.goto(f"http://127.0.0.1:{PORT}/")
            time.sleep(a.wait)
            page.screenshot(a.out)
            phone = b.page(width=390, height=844, mobile=True, scheme="dark")
            phone.goto(f"http://127.0.0.1:{PORT}/")
            phone.screenshot(a.phone)
        print(f"wrote {a.out} and {a.phone}")
        return 0
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        subprocess.run(["ip", "netns", "pids", name], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
