"""benchmarks/harness.py: the many-socket namespace others build on (root only)."""
from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_harness_builds_the_mix_and_always_cleans_up():
    from benchmarks.harness import Mix, socket_namespace
    from portscope.sockets import snapshot
    mix = Mix(established=1200, time_wait=300, udp=100)
    with socket_namespace(mix=mix, per_process=500, prefix="pstestharn") as ns:
        name = ns.name
        assert name in _namespaces()
        assert len(ns.helpers) >= 4                      # spread over several processes
        counts = {}
        for r in snapshot(netns=name, classify=False).rows():
            counts[(r["proto"], r["state"])] = counts.get((r["proto"], r["state"]), 0) + 1
        assert counts[("tcp", "ESTABLISHED")] == 1200
        assert counts[("tcp", "LISTEN")] == ns.listeners
        assert counts.get(("tcp", "TIME_WAIT"), 0) == ns.count_time_wait()
        assert 250 <= counts[("tcp", "TIME_WAIT")] <= 300
        assert counts[("udp", "CLOSE")] + counts[("udp", "ESTABLISHED")] == 100
        ss = ns.run("ss", "-tanH", "state", "established").stdout
        assert len(ss.splitlines()) == 1200
        assert ns.top_up_time_wait() >= 0 and ns.count_time_wait() >= 300 - 5
        pids = [h.pid for h in ns.helpers]
    assert name not in _namespaces()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            import os
            os.kill(pid, 0)


def test_harness_spreads_time_wait_over_destinations(monkeypatch):
    """One destination has only the range's ports: TIME_WAIT beyond TW_PER_DEST goes to
    further listeners (19999, 19998, ...), and topping up refills every one of them."""
    from collections import Counter

    from benchmarks import harness
    monkeypatch.setattr(harness, "TW_PER_DEST", 120)
    with harness.socket_namespace(mix=harness.Mix(20, 300, 0), prefix="pstestharn") as ns:
        assert len(ns.tw_helpers) == 3
        def by_dport():
            out = ns.run("ss", "-tanH", "state", "time-wait").stdout
            return Counter(line.split()[-1].rsplit(":", 1)[1] for line in out.splitlines() if line.strip())
        seen = by_dport()
        assert set(seen) == {"19999", "19998", "19997"} and sum(seen.values()) >= 295
        assert all(c <= 120 for c in seen.values())
        assert ns.top_up_time_wait() >= 0 and ns.count_time_wait() >= 295


def test_harness_removes_the_namespace_when_the_block_raises():
    from benchmarks.harness import Mix, socket_namespace
    seen = None
    with pytest.raises(RuntimeError, match="boom"):
        with socket_namespace(mix=Mix(10, 0, 0), prefix="pstestharn") as ns:
            seen = ns.name
            raise RuntimeError("boom")
    assert seen and seen not in _namespaces()


def test_benchmark_command_runs_end_to_end(tmp_path):
    """The one-command benchmark, tiny: every tool runs, ratios and memory are reported."""
    import json
    import sys
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_sockets", "--sockets", "300", "--runs", "1",
                        "--skip-slow", "--json", str(out)], capture_output=True, text=True, timeout=120,
                       cwd=__import__("os").path.dirname(__import__("os").path.dirname(__file__)))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert set(doc["median"]) == {"lib snapshot tcp", "lib snapshot all", "psutil tcp", "conns --count",
                                  "conns --count tcp", "ss -tan", "conns --process", "conns (rows)"}
    # the library and psutil saw the same TCP sockets
    assert doc["counts"]["lib snapshot tcp"] == doc["counts"]["psutil tcp"] > 200
    assert all(0 < doc["peak_rss_mib"][k] < 150 for k in doc["peak_rss_mib"])
    assert "targets (issue 3)" in r.stdout
    assert doc["namespace"].startswith("psbench-") and doc["namespace"] not in _namespaces()


def test_harness_makes_the_namespace_from_a_parent_with_its_own_hash():
    """parent=: the namespace is created inside the parent's network namespace, so it takes
    the parent's tcp_child_ehash_entries (its own established hash, read back inside), and
    still holds more TIME_WAIT than the N/2 the kernel would cap it at; the host's setting
    is untouched and both namespaces are gone afterwards."""
    from benchmarks.bench_allnetns import ehash_buckets, ehash_parent
    from benchmarks.harness import Mix, socket_namespace

    def host_child_ehash() -> str:
        with open("/proc/sys/net/ipv4/tcp_child_ehash_entries") as f:
            return f.read()
    before = host_child_ehash()
    with ehash_parent(50, "pstestharn") as parent:
        assert parent in _namespaces()
        with socket_namespace(mix=Mix(200, 300, 0), prefix="pstestharn", parent=parent) as ns:
            assert ehash_buckets([ns.name]) == {64}                 # 50 rounded up to 2^n
            assert ehash_buckets([parent]) == {-int(open("/proc/sys/net/ipv4/tcp_ehash_entries").read())}
            assert ns.count_time_wait() >= 295                       # not capped at 64 / 2
            name = ns.name
        assert name not in _namespaces()
    assert parent not in _namespaces()
    assert host_child_ehash() == before


def test_allnetns_benchmark_child_ehash_runs_end_to_end():
    """bench_allnetns --child-ehash, tiny: both layouts made with their own hash, checked
    inside, measured, and every namespace removed."""
    import os
    import sys
    p = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_allnetns", "--namespaces", "2", "--sockets", "100",
                          "--rounds", "1", "--only-ours", "--child-ehash", "100"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    assert "each namespace its own, 128 buckets" in out and "read inside: [128]" in out
    assert "kernel floor (all)" in out
    # its namespaces (the parent too) are named psall<pid>...
    assert not [n for n in _namespaces() if n.startswith(f"psall{p.pid}")]
