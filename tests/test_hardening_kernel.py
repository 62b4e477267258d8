"""Issue 12's faults injected for real: a full file system (tmpfs with no room left), a
read-only one, a SIGKILLed lab. Each runs in a private mount namespace (unshare -m) and a
private network namespace, so the host's mounts and settings are never touched."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import host_sysctls, needs_netns

needs_unshare = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")


def in_private_mount(ns, mount_opts: str, d: str, prep: str, *cmd: str) -> subprocess.CompletedProcess:
    """Mount a tmpfs on `d` (options `mount_opts`) in a mount namespace of its own, run shell
    `prep` there, then `cmd` inside network namespace `ns`. The mount dies with the process."""
    script = (f'mount -t tmpfs -o {mount_opts} portscope-test "$D" && {prep} && '
              f'exec ip netns exec "$NS" "$@"')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "D": d, "NS": ns.name})


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portscope: error: ") and "Traceback" not in err, err
    return lines[0]


@needs_netns
@needs_unshare
def test_full_disk_during_persist_names_the_file_exits_5_and_rolls_back(netns, tmp_path):
    host = host_sysctls()
    before = netns.sysctl("net.ipv4.ip_local_port_range")
    d = str(tmp_path / "sysctl.d")
    os.mkdir(d)
    # an existing drop-in, then fill every page the tmpfs has
    prep = ('printf "net.ipv4.ip_local_reserved_ports = 9\\n" > "$D/90-portscope.conf" && '
            '(dd if=/dev/zero of="$D/fill" bs=4096 count=64 2>/dev/null; true)')
    r = in_private_mount(netns, "size=16k", d, prep, "env", f"PORTSCOPE_SYSCTL_DIR={d}", sys.executable,
                         "-m", "portscope", "range", "set", "40000", "50001", "--persist")
    assert r.returncode == 5, r
    line = one_line(r.stderr)
    assert f"{d}/90-portscope.conf" in line and "no space left" in line and "ENOSPC" in line
    assert "rolled back" in line
    assert netns.sysctl("net.ipv4.ip_local_port_range") == before     # the range change was undone
    assert host_sysctls() == host


@needs_netns
@needs_unshare
def test_read_only_sysctl_dir_is_not_told_to_run_as_root(netns, tmp_path):
    before = netns.sysctl("net.ipv4.ip_local_port_range")
    d = str(tmp_path / "sysctl.d")
    os.mkdir(d)
    r = in_private_mount(netns, "ro", d, "true", "env", f"PORTSCOPE_SYSCTL_DIR={d}", sys.executable,
                         "-m", "portscope", "range", "set", "40000", "50001", "--persist")
    assert r.returncode == 5, r
    line = one_line(r.stderr)
    assert d in line and "read-only file system" in line and "run as root" not in line
    assert netns.sysctl("net.ipv4.ip_local_port_range") == before


# ------------------------------------------------------------------ exporter textfile (defect 7)

def test_textfile_once_into_proc_exits_5():
    r = subprocess.run([sys.executable, "-m", "portscope", "exporter", "--textfile", "/proc/version", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 5, r
    assert "/proc/version" in one_line(r.stderr)


@needs_netns
@needs_unshare
def test_textfile_once_on_a_full_disk_exits_5(netns, tmp_path):
    d = str(tmp_path / "tf")
    os.mkdir(d)
    r = in_private_mount(netns, "size=16k", d, '(dd if=/dev/zero of="$D/fill" bs=4096 count=64 2>/dev/null; true)',
                         sys.executable, "-m", "portscope", "exporter", "--textfile", f"{d}/p.prom", "--once")
    assert r.returncode == 5, r
    line = one_line(r.stderr)
    assert f"{d}/p.prom" in line and "ENOSPC" in line


@needs_netns
@needs_unshare
def test_textfile_loop_retries_and_counts_failures(netns, tmp_path):
    """The disk is full for the first writes, then space comes back: the loop never stops,
    the file appears and its counter says how many writes were lost."""
    d = str(tmp_path / "tf")
    os.mkdir(d)
    # (a background job of sh ignores SIGINT: it is stopped with SIGTERM)
    # space comes back once 3 writes have failed (waited for, not timed: a loaded machine is slow).
    # $E exists before the job starts: the job's shell opens it when it gets to run, and a grep
    # before that failed, which ended the wait at once (first write then on an emptied disk)
    script = ('mount -t tmpfs -o size=16k portscope-test "$D" || exit 9; '
              'dd if=/dev/zero of="$D/fill" bs=4096 count=64 2>/dev/null; : > "$E"; '
              'ip netns exec "$NS" "$PY" -m portscope exporter --textfile "$D/p.prom" --interval 0.2 2> "$E" & pid=$!; '
              'i=0; while [ "$(grep -c retrying "$E")" -lt 3 ] && [ $i -lt 200 ]; do sleep 0.2; i=$((i+1)); done; '
              'rm -f "$D/fill"; i=0; while [ ! -s "$D/p.prom" ] && [ $i -lt 200 ]; do sleep 0.2; i=$((i+1)); done; '
              'sleep 0.5; kill -TERM $pid; wait $pid; echo "rc=$?"; cat "$D/p.prom"')
    errfile = tmp_path / "stderr"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "D": d, "NS": netns.name, "PY": sys.executable,
                                                    "E": str(errfile)})
    stderr = errfile.read_text()
    from prometheus_client.parser import text_string_to_metric_families
    body = r.stdout.split("\n", 1)[1]
    errs = [s.value for f in text_string_to_metric_families(body) for s in f.samples
            if s.name == "portscope_textfile_write_errors_total"]
    assert errs and errs[0] >= 3, (r, stderr)  # the writes that failed on the full disk, counted
    assert "portscope_ephemeral_range_ports" in body
    assert "retrying" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------ ranges too small to serve (defect 11)

TWO_CONNECTS = r"""
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 5000)); srv.listen()
got = []
for _ in range(2):
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", 5000)); got.append("ok")
    except OSError as e:
        got.append(e.errno)
print(got)
"""


@needs_netns
def test_one_port_range_is_refused_without_force_and_the_kernel_agrees(cli, netns):
    import errno
    before = netns.sysctl("net.ipv4.ip_local_port_range")
    code, out, err = cli("--netns", netns.name, "range", "set", "40000", "40000")
    assert code == 2
    line = one_line(err)
    assert "1 usable port" in line and "--force" in line and "EADDRNOTAVAIL" in line
    assert netns.sysctl("net.ipv4.ip_local_port_range") == before
    # the same rule counts reservations: 2 ports, one reserved
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40001")
    code, out, err = cli("--netns", netns.name, "range", "set", "40000", "40001")
    assert code == 2 and "1 of its 2 reserved" in one_line(err)
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "")
    # with --force it is applied, with the reason as a warning; the kernel then shows why
    code, out, err = cli("--netns", netns.name, "range", "set", "40000", "40000", "--force")
    assert code == 0 and "--force: the range 40000 leaves 1 usable port" in err
    assert netns.sysctl("net.ipv4.ip_local_port_range").split() == ["40000", "40000"]
    got = netns.python(TWO_CONNECTS).stdout.strip()
    assert got == f"['ok', {errno.EADDRNOTAVAIL}]", got


def test_lab_refuses_the_same_ranges():
    from portscope import lab
    from portscope.errors import BadInput
    from portscope.ports import PortRange, PortSet
    for rng, res in ((PortRange(40000, 40000), PortSet()), (PortRange(40000, 40001), PortSet.parse("40001"))):
        with pytest.raises(BadInput, match="usable"):
            lab.Plan(range=rng, reserved=res).validate()


# ------------------------------------------------------------------ a pool filled by bind-before-connect (defect 12)

BIND_FILL = r"""
import json, socket, sys, time
a = socket.socket(); a.bind(("127.0.0.1", 5000)); a.listen(512)
b = socket.socket(); b.bind(("127.0.0.2", 5001)); b.listen(512)
held, err = [], None
for _ in range(1000):                          # bounded: the range has 100 ports
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0)); s.connect(("127.0.0.1", 5000))
    except OSError as e:
        err = e.errno; s.close(); break
    held.append(s)
c = socket.socket()
try:
    c.connect(("127.0.0.2", 5001)); second = "ok"
except OSError as e:
    second = e.errno
print(json.dumps({"held": len(held), "first_refusal": err, "second_destination": second}), flush=True)
sys.stdin.read()                                 # hold until the test closes stdin
"""


@needs_netns
def test_a_pool_filled_by_bind_before_connect_is_explained(cli, netns):
    import errno
    import json
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    netns.run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo", check=False)
    p = netns.popen(sys.executable, "-c", BIND_FILL, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        got = json.loads(p.stdout.readline())
        # the kernel: one destination got all 100 ports, the second destination none
        assert got["held"] == 100 and got["first_refusal"] in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
        assert got["second_destination"] in (errno.EADDRINUSE, errno.EADDRNOTAVAIL), got
        code, out, err = cli("pressure", "--json", "--netns", netns.name)
        assert code == 0, err
        doc = json.loads(out)
        assert doc["global"]["in_use"] == 100 and doc["global"]["capacity"] == 100
        [f] = [f for f in doc["findings"] if f["id"] == "pool-full"]
        assert f["severity"] == "critical"
        assert "bind-before-connect" in f["message"] and "127.0.0.1:5000 100" in f["message"]
        assert "IP_BIND_ADDRESS_NO_PORT" in f["remedy"]
        assert f["evidence"]["client_ports"] == 100 and f["evidence"]["ports_shared"] is False
    finally:
        p.stdin.close()
        p.wait(timeout=20)


@needs_netns
def test_pool_full_stays_silent_when_the_pool_is_not_full(cli, netns):
    import json
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    code, out, err = cli("pressure", "--json", "--netns", netns.name)
    assert code == 0 and "pool-full" not in {f["id"] for f in json.loads(out)["findings"]}


# ------------------------------------------------------------------ parity guess on a realistic mix (defect 13)

@needs_netns
@pytest.mark.parametrize("seed", [2, 6])
def test_parity_guess_on_a_realistic_mix_of_plain_connects(seed):
    """benchmarks/bench_parity_fp.py's mixes (docs/pressure.md has the 20-mix figures): plain
    connect() to many destinations, a third closed by the client, is never called
    bind-before-connect; four real bind(0)+connect() sockets among them are all found."""
    from benchmarks.bench_parity_fp import trial
    plain = trial(seed, bound=0)
    assert plain["plain"] > 50 and plain["inferred"] == 0, plain
    mixed = trial(seed, bound=4)
    assert mixed["false_positives"] == 0 and mixed["found_bound"] == 4, mixed


@needs_netns
def test_reserving_the_whole_range_is_refused_like_a_one_port_range(cli, netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    code, out, err = cli("--netns", netns.name, "reserve", "add", "40000-40008")
    assert code == 2 and "leaves 1 usable port" in one_line(err) and "--force" in err
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == ""
    code, out, err = cli("--netns", netns.name, "reserve", "add", "40000-40007")     # 2 stay usable
    assert code == 0, err
    code, out, err = cli("--netns", netns.name, "reserve", "add", "40008", "--force")
    assert code == 0 and "--force: reserving 40008 leaves 1 usable port" in err
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == "40000-40008"
