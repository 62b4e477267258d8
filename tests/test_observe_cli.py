"""`portscope watch` and `report --observe` end to end: the real CLI, real failures in a
private namespace, the JSON held to docs/json.md, exit codes, Ctrl-C, a tty."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import needs_netns
from test_json_contract import DOC, check_runs, expand, loads_strict, parse_doc
from test_observe_kernel import CLIENT, LISTENER, PORT, _bpf_fds

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")


def _attached(pid: int) -> bool:
    """The watcher in process `pid` has its 4 exit programs on their 4 perf events."""
    kinds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kinds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return kinds.count("anon_inode:bpf-prog") == 4 and kinds.count("anon_inode:[perf_event]") == 4


def _start(args: list[str]) -> subprocess.Popen:
    p = subprocess.Popen([PORTSCOPE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 20
    while not _attached(p.pid):
        assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.poll() is not None else "slow"
        time.sleep(0.05)
    return p


@needs_netns
def test_watch_and_report_observe_json(netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    lst = netns.popen(sys.executable, "-c", LISTENER, "4", stdout=subprocess.PIPE, text=True)
    assert lst.stdout.readline().strip() == "up"
    try:
        watch = _start(["watch", "--json", "--seconds", "4", "--netns", netns.name])
        report = _start(["report", "--observe", "4", "--json", "--netns", netns.name])
        got = json.loads(netns.python(CLIENT, "ps-client", "tcp-connect", "30", str(PORT), "4", "-").stdout)
        w_out, w_err = watch.communicate(timeout=30)
        r_out, r_err = report.communicate(timeout=30)
    finally:
        lst.kill()
    assert watch.returncode == 0 and w_err == "", w_err
    assert report.returncode == 0 and r_err == "", r_err
    assert got["fails"] == {"EADDRNOTAVAIL": 20}
    w = loads_strict(w_out)
    r = loads_strict(r_out)["observed"]
    for doc in (w, r):
        assert doc["backend"] == "bpf"
        assert [(f["syscall"], f["errno"], f["count"], f["comm"], f["dst"], f["dport"], f["pid"])
                for f in doc["failures"]] == [
            ("connect", "EADDRNOTAVAIL", 20, "ps-client", "127.0.0.1", PORT, got["pid"])]
        assert doc["findings"][0]["id"] == "connect-failures"
    tables, samples = parse_doc(DOC.read_text())
    rows = expand(tables)
    check_runs(rows["watch"], "watch", [(["watch", "--json", "--seconds", "4"], w_out)])
    check_runs(rows["report"], "report", [(["report", "--observe", "4", "--json"], r_out)])


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "1e9", "inf", "soon"])
def test_bad_seconds_exit_2(cli, bad):
    for args in (["watch", "--seconds", bad], ["report", "--observe", bad]):
        code, out, err = cli(*args)
        assert code == 2 and out == ""
        assert err.startswith("portscope: error: ") and err.count("\n") == 1


def _nobody(entry, *args):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *entry, *args],
                          capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.root
def test_not_root_one_line_counters_still_shown(nobody_portscope):
    p = _nobody(nobody_portscope, "watch", "--seconds", "0.3", "--bpf")
    assert p.returncode == 3
    assert p.stderr.startswith("portscope: error: eBPF failure counter not loaded") and p.stderr.count("\n") == 1
    assert "TWRecycled +" in p.stdout and "backend counters" in p.stdout
    p = _nobody(nobody_portscope, "watch", "--seconds", "0.3", "--json")
    assert p.returncode == 0 and p.stderr.count("\n") == 1 and "showing kernel counters only" in p.stderr
    d = json.loads(p.stdout)
    assert d["backend"] == "counters" and d["failures"] == [] and set(d["counters"]) == {
        "TWRecycled", "TCPTimeWaitOverflow", "TWKilled", "tw", "tcp_max_tw_buckets"}
    p = _nobody(nobody_portscope, "watch", "--seconds", "0.3", "--no-bpf", "--json")
    assert p.returncode == 0 and p.stderr == "" and json.loads(p.stdout)["backend"] == "counters"


@pytest.mark.root
def test_verifier_refusal_one_line_and_fallback(cli, monkeypatch):
    from portscope.observe import programs
    real = programs.exit_program

    def bad(sc, *a, **k):
        code = real(sc, *a, **k)
        return bytes([0x79, 0x02, 0, 0, 0, 0, 0, 0]) + code if sc.name == "sendto" else code
    monkeypatch.setattr(programs, "exit_program", bad)
    base = _bpf_fds()
    code, out, err = cli("watch", "--seconds", "0.2", "--json")
    assert code == 0 and json.loads(out)["backend"] == "counters"
    assert err.count("\n") == 1 and "refused program ps_out_sendto" in err and "counters only" in err
    code, out, err = cli("watch", "--seconds", "0.2", "--bpf")
    assert code == 4 and err.startswith("portscope: error: ") and err.count("\n") == 1
    assert "ps_out_sendto" in err and "Traceback" not in err
    assert _bpf_fds() == base


@pytest.mark.root
def test_ctrl_c_in_process_prints_the_window_and_closes_everything(cli, monkeypatch):
    from portscope.observe import watch as W
    base = _bpf_fds()

    def interrupt(_s):
        assert _bpf_fds() - base == 9           # loaded while the window runs (1 map, 4 programs, 4 events)
        raise KeyboardInterrupt
    monkeypatch.setattr(W.time, "sleep", interrupt)
    code, out, err = cli("watch", "--seconds", "30", "--json")
    assert code == 0 and json.loads(out)["backend"] == "bpf" and json.loads(out)["seconds"] < 5
    assert _bpf_fds() == base


@pytest.mark.root
def test_sigint_ends_a_long_window_at_once():
    p = _start(["watch", "--seconds", "600"])
    time.sleep(1)           # attached; let the window begin (before it, Ctrl-C is a plain exit 130)
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0 and err == "" and time.monotonic() - t < 10
    assert out.startswith("portscope watch: ") and "Counters" in out


@pytest.mark.root
def test_live_view_on_a_tty_quits_on_q():
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(PORTSCOPE, [PORTSCOPE, "watch", "--interval", "0.2"])
    buf = b""
    end = time.monotonic() + 20
    while b"q or Ctrl-C quits" not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    assert b"portscope watch" in buf and b"backend bpf" in buf and b"TWRecycled" in buf
    os.write(fd, b"q")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        try:
            select.select([fd], [], [], 0.2) and os.read(fd, 65536)
        except OSError:
            pass
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("watch did not quit on q")
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.root
def test_sigint_at_any_moment_is_never_a_traceback():
    """SIGINT at once after attachment, repeatedly: either the window's summary (exit 0) or
    one line (exit 130), never a traceback."""
    for _ in range(6):
        p = _start(["watch", "--seconds", "600"])
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        assert "Traceback" not in err
        assert (p.returncode == 130 and err.strip().startswith("portscope: ") and "\n" not in err.strip()) or (
            p.returncode == 0 and out.startswith("portscope watch: ")), (p.returncode, err)


@needs_netns
def test_watch_all_netns_labels_each_namespace(netns):
    """Failures provoked in a namespace made here, watched with --all-netns: its rows and
    findings carry its name and inode, and its own entry has what `watch --netns` shows."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    lst = netns.popen(sys.executable, "-c", LISTENER, "4", stdout=subprocess.PIPE, text=True)
    assert lst.stdout.readline().strip() == "up"
    try:
        watch = _start(["watch", "--all-netns", "--json", "--seconds", "8"])
        time.sleep(2)            # past the first read of every namespace's counters
        got = json.loads(netns.python(CLIENT, "ps-client", "tcp-connect", "30", str(PORT), "4", "-").stdout)
        out, err = watch.communicate(timeout=120)
    finally:
        lst.kill()
    # other tenants' namespaces may vanish mid-window: one warning line each, nothing else
    assert watch.returncode == 0, err
    assert all(" skipped: " in line for line in err.splitlines()), err
    assert got["fails"] == {"EADDRNOTAVAIL": 20}
    doc = loads_strict(out)
    inode = os.stat(f"/run/netns/{netns.name}").st_ino
    mine = [f for f in doc["failures"] if f["netns_inode"] == inode]
    assert [(f["syscall"], f["errno"], f["count"], f["comm"], f["pid"], f["netns"], f["container"], f["pod"])
            for f in mine] == [("connect", "EADDRNOTAVAIL", 20, "ps-client", got["pid"], netns.name, None, None)]
    (ns,) = [n for n in doc["namespaces"] if n["netns_inode"] == inode]
    assert ns["netns"] == netns.name and ns["watch"]["backend"] == "bpf"
    assert [(f["count"], f["netns"]) for f in ns["watch"]["failures"]] == [(20, inode)]
    assert ns["watch"]["findings"][0]["id"] == "connect-failures"
    assert any(f["id"] == "connect-failures" and f["netns"] == netns.name for f in doc["findings"])
    assert netns.name in ns["watch"]["findings"][0]["remedy"]
    rows = expand(parse_doc(DOC.read_text())[0])
    check_runs(rows["watch-all"], "watch-all", [(["watch", "--all-netns", "--json", "--seconds", "8"], out)])


def test_watch_all_netns_refuses_netns(cli):
    code, out, err = cli("watch", "--all-netns", "--netns", "pid:1", "--seconds", "1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--all-netns" in err, err
