"""Start-up: `portscope --help`, `range`, `port 80` (and `namespaces`, `pressure --json`) against `python -c pass`, in one run.

    .venv/bin/python -m benchmarks.bench_startup [--rounds 21] [--baseline DIR] [--private-hash] [--json]

Every command runs as `python -m portscope ...` with the checkout as working directory
and first on PYTHONPATH (so --baseline DIR, another checkout, runs the same way in the
same rounds), three ways: the fast front end (front.fast, the default), the click CLI
(`PORTSCOPE_NO_FAST=1`, what every command line ran before the front end), and the wrapper
pip < 25 wrote as the console script (it imports re first; run with -c, so the baseline runs it
too). The venv's own console script `portscope` runs too (pip >= 25's wrapper imports only sys;
scripts/setup.sh installs such a pip). Beside them the floors: `python -c pass` (the
interpreter) and `python -c "import click"`.
Rounds are interleaved in a rotating order; CPU time (user + sys of the child and the
children it waited for, from wait4) is the figure, medians over rounds, as ratios to
`python -c pass` of the same round. Children run without PYTHONDONTWRITEBYTECODE (after a
compileall), as an installed package does: with it, changed modules compile on every start.
Then `-X importtime` of each command (the smallest of 5 runs per module) names the modules
that cost the most, by their own import time.

`port 80` reads the sockets on port 80 over sock_diag; the kernel walks its TCP hash tables,
which every network namespace shares, so that read grows with the sockets of *other*
namespaces too (other benchmarks on this machine). The TCP sockets allocated machine-wide
(`alloc` in /proc/net/sockstat) are printed before and after the rounds: compare figures
only at like counts. With --private-hash (root) each fast command, the console script and
`python -c pass` also run in a network namespace with TCP and UDP hash tables of its own
(net.ipv4.tcp_child_ehash_entries / udp_child_hash_entries set to 1024 in a parent
namespace the benchmark creates, so the host's settings are untouched): the read then
walks only that namespace's sockets, as on a machine with no one else's, whatever the other
jobs hold. Both namespaces are removed at the end. `pressure --json` walks the sockets in
the range likewise: with a private hash it times start-up and an empty namespace's read.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
COMMANDS = [("--help", ["--help"]), ("range", ["range"]), ("port 80", ["port", "80"]),
            ("namespaces", ["namespaces"]), ("pressure --json", ["pressure", "--json"])]
SCRIPT = os.path.join(os.path.dirname(PY), "portscope")      # the venv's console script (this checkout)
# the console script pip < 25 writes (distlib's template): re is imported before our code runs.
# Run with -c from a checkout, so both checkouts can be timed as installed by an older pip
OLD_WRAPPER = ("import re\nimport sys\nfrom portscope.front.fast import main\n"
               "sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\nsys.exit(main())\n")


def child_env(**extra: str) -> dict:
    """The children's environment: .pyc files written and used, the default terminal width."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PORTSCOPE_NO_FAST")}
    env.setdefault("COLUMNS", "80")
    env.update(extra)
    return env


CLONE_NEWNET = 0x40000000


class PrivateHash:
    """A network namespace whose TCP and UDP hash tables hold only its own sockets: a child
    (made by `unshare -n` in a holder process) of a namespace whose *_child_*hash_entries
    are set. `enter` (a preexec_fn) moves a child process into it before it execs."""

    def __init__(self) -> None:
        self.parent = f"psbench-startup-{uuid.uuid4().hex[:8]}"
        self.holder: subprocess.Popen | None = None
        self.fd = -1
        self.libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> "PrivateHash":
        subprocess.run(["ip", "netns", "add", self.parent], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", self.parent, "sh", "-c",
                            "echo 1024 > /proc/sys/net/ipv4/tcp_child_ehash_entries && "
                            "echo 1024 > /proc/sys/net/ipv4/udp_child_hash_entries"], check=True)
            before = os.stat(f"/run/netns/{self.parent}").st_ino
            self.holder = subprocess.Popen(["ip", "netns", "exec", self.parent, "unshare", "-n", "sleep", "3600"])
            path = f"/proc/{self.holder.pid}/ns/net"
            for _ in range(200):            # ip and unshare exec in place: the pid stays, its namespace changes
                if os.stat(path).st_ino not in (before, os.stat("/proc/self/ns/net").st_ino):
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError("the private-hash namespace did not appear")
            self.fd = os.open(path, os.O_RDONLY)
            size = subprocess.run(["cat", "/proc/sys/net/ipv4/tcp_ehash_entries"], capture_output=True, text=True,
                                  preexec_fn=self.enter, check=True).stdout.strip()
            if size != "1024":
                raise RuntimeError(f"the private namespace's TCP hash has {size} buckets, not 1024")
        except BaseException:
            self.__exit__()
            raise
        return self

    def enter(self) -> None:
        """Join the namespace (in the forked child, before exec)."""
        if self.libc.setns(self.fd, CLONE_NEWNET) != 0:
            os._exit(111)

    def __exit__(self, *_: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
        subprocess.run(["ip", "netns", "delete", self.parent], check=False)


def cpu_of(argv: list[str], env: dict | None = None, cwd: str | None = None, preexec=None) -> float:
    """CPU seconds (user + sys) of one run of argv."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd,
                         preexec_fn=preexec)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}")
    return ru.ru_utime + ru.ru_stime


def importtime(argv: list[str], env: dict, cwd: str, runs: int = 5) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us), smallest over `runs`, most expensive first."""
    best: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        err = subprocess.run([PY, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                             cwd=cwd).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cum, name = line[len("import time:"):].split("|")
            key = name.strip()
            old = best.get(key, (10**12, 10**12))
            best[key] = (min(old[0], int(own)), min(old[1], int(cum)))
    return sorted(((k, s, c) for k, (s, c) in best.items()), key=lambda x: -x[1])


def tcp_allocated() -> int | None:
    """TCP sockets allocated machine-wide (every namespace): /proc/net/sockstat's `alloc`."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    words = line.split()
                    return int(words[words.index("alloc") + 1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21, help="interleaved rounds (medians are over these)")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same rounds")
    ap.add_argument("--top", type=int, default=12, help="modules to list from -X importtime")
    ap.add_argument("--private-hash", action="store_true",
                    help="also run the fast commands in a namespace with hash tables of its own (root)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    checkouts = {"this": HERE}
    if a.baseline:
        checkouts["baseline"] = os.path.abspath(a.baseline)
    with PrivateHash() if a.private_hash else _Nothing() as private:
        return _run(a, checkouts, private)


def anchor(label: str) -> str:
    """The `python -c pass` row a row is compared with (the one run the same way)."""
    return "private hash: python -c pass" if label.startswith("private hash:") else "python -c pass"


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        pass


def _run(a: argparse.Namespace, checkouts: dict, private: PrivateHash | None) -> int:
    base_env = child_env()
    jobs: list[tuple[str, list[str], dict | None, str | None, object]] = [
        ("python -c pass", [PY, "-c", "pass"], base_env, None, None),
        ("python -c 'import click'", [PY, "-c", "import click"], base_env, None, None),
    ]
    if private:
        jobs.append(("private hash: python -c pass", [PY, "-c", "pass"], base_env, None, private.enter))
    for tag, path in checkouts.items():
        subprocess.run([PY, "-m", "compileall", "-q", os.path.join(path, "portscope")], env=base_env)
        fast = child_env(PYTHONPATH=path)
        slow = child_env(PYTHONPATH=path, PORTSCOPE_NO_FAST="1")
        for label, args in COMMANDS:
            jobs.append((f"{tag}: -m portscope {label}", [PY, "-m", "portscope", *args], fast, path, None))
            jobs.append((f"{tag}: -m portscope {label} (click)", [PY, "-m", "portscope", *args], slow, path, None))
            if private:
                jobs.append((f"private hash: {tag}: -m portscope {label}", [PY, "-m", "portscope", *args], fast,
                             path, private.enter))
            jobs.append((f"{tag}: portscope {label} (pip<25 wrapper)", [PY, "-c", OLD_WRAPPER, *args], fast, path,
                         None))
    if os.path.exists(SCRIPT):
        for label, args in COMMANDS:
            jobs.append((f"this: portscope {label} (console script)", [SCRIPT, *args], child_env(), HERE, None))
            if private:
                jobs.append((f"private hash: this: portscope {label} (console script)", [SCRIPT, *args],
                             child_env(), HERE, private.enter))
    for _, cmd, env, cwd, pre in jobs:
        cpu_of(cmd, env, cwd, pre)                 # warm-up (.pyc files, page cache)
    load0, tcp0 = os.getloadavg(), tcp_allocated()
    res: dict[str, list[float]] = {j[0]: [] for j in jobs}
    for r in range(a.rounds):
        k = r % len(jobs)
        for label, cmd, env, cwd, pre in jobs[k:] + jobs[:k]:
            res[label].append(cpu_of(cmd, env, cwd, pre))
    # a private-hash run forks without vfork (its preexec_fn): its anchor is `python -c pass` run the same way
    rows = [{"command": label, "cpu_ms": 1000 * statistics.median(v),
             "ratio_to_pass": statistics.median(x / b for x, b in zip(v, res[anchor(label)])),
             "anchor": anchor(label)} for label, v in res.items()]
    env = child_env(PYTHONPATH=HERE)
    offenders = {label: [{"module": m, "self_us": s, "cumulative_us": c}
                         for m, s, c in importtime(["-m", "portscope", *args], env, HERE)[:a.top]]
                 for label, args in COMMANDS}
    doc = {"rounds": a.rounds, "load_before": load0, "load_after": os.getloadavg(), "tcp_alloc_before": tcp0,
           "tcp_alloc_after": tcp_allocated(), "rows": rows,
           "importtime_this_checkout": offenders, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{a.rounds} rounds, load average {load0[0]:.2f} before / {doc['load_after'][0]:.2f} after; "
          f"TCP sockets allocated machine-wide {tcp0} / {doc['tcp_alloc_after']}; CPU medians")
    for r in rows:
        print(f"  {r['command']:60} {r['cpu_ms']:7.1f} ms  {r['ratio_to_pass']:5.2f}x {r['anchor']}")
    for label, mods in offenders.items():
        print(f"-X importtime, portscope {label} (self us, cumulative us):")
        for m in mods:
            print(f"  {m['self_us']:7d} {m['cumulative_us']:8d}  {m['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
