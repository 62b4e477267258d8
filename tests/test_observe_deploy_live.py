"""The systemd unit's capabilities for the eBPF failure counter, run for real: the exporter
as uid 65534 holding exactly a set of ambient capabilities (as the unit grants them), with
--bpf so that a counter that cannot load is exit 3."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from test_deploy import _as_nobody, _unit

pytestmark = [pytest.mark.root, pytest.mark.live,
              pytest.mark.skipif(not shutil.which("setpriv") or not shutil.which("unshare"),
                                 reason="needs setpriv and unshare (util-linux)")]


def _host_has_tracefs() -> bool:
    return any(os.path.isdir(os.path.join(r, "events", "syscalls"))
               for r in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))


def _load(entry, caps, tmp, *, tracefs: bool) -> subprocess.CompletedProcess:
    """One textfile collection with --bpf; `tracefs`: run it in a private mount namespace
    where tracefs is mounted (the host's mounts are not touched either way)."""
    path = os.path.join(tmp, "out.prom")
    if not tracefs:
        return _as_nobody(entry, caps, "--textfile", path, "--once", "--bpf")
    names = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               f"--inh-caps=-all{',' + names if names else ''}", f"--bounding-set=-all{',' + names if names else ''}"]
    if caps:
        setpriv.append(f"--ambient-caps={names}")
    script = 'mount -t tracefs nodev /sys/kernel/tracing && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           *setpriv, *entry, "exporter", "--textfile", path, "--once", "--bpf"],
                          capture_output=True, text=True, timeout=60, cwd="/")


@pytest.fixture
def tmp():
    import tempfile
    d = tempfile.mkdtemp(prefix="portscope-observe-deploy-")
    os.chmod(d, 0o777)                       # uid 65534 writes the textfile here
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_unit_caps_load_the_counter_without_tracefs(tmp, nobody_portscope):
    caps = _unit()["AmbientCapabilities"].split()
    # the unit also grants CAP_NET_ADMIN (conntrack, issue 13); these four are the counter's
    assert set(caps) >= {"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"}
    if _host_has_tracefs():
        pytest.skip("the host has tracefs mounted: the private-mount path is not exercised")
    r = _load(nobody_portscope, caps, tmp, tracefs=False)
    assert r.returncode == 0, r.stderr
    assert "portscope_failure_counter_loaded{netns=\"\"} 1.0" in open(os.path.join(tmp, "out.prom")).read()


@pytest.mark.parametrize("caps, tracefs, ok, why", [
    ([], True, False, "bpf(2) refused"),
    (["CAP_BPF", "CAP_PERFMON"], True, False, "tracefs files are root's 0440: not readable"),
    (["CAP_BPF", "CAP_DAC_READ_SEARCH"], True, False, "CAP_PERFMON: tracepoint programs, system-wide perf events"),
    (["CAP_PERFMON", "CAP_DAC_READ_SEARCH"], True, False, "CAP_BPF: map creation"),
    (["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"], True, True, "enough when tracefs is mounted"),
    (["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"], False, False, "the private tracefs mount needs CAP_SYS_ADMIN"),
    (["CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"], False, False, "the private mount's files are root's too"),
])
def test_each_capability_is_needed(tmp, nobody_portscope, caps, tracefs, ok, why):
    if not tracefs and _host_has_tracefs():
        pytest.skip("the host has tracefs mounted")
    r = _load(nobody_portscope, caps, tmp, tracefs=tracefs)
    if ok:
        assert r.returncode == 0, (why, r.stderr)
    else:
        assert r.returncode == 3, (why, r.returncode, r.stderr)
        assert r.stderr.startswith("portscope: error: eBPF failure counter not loaded") and r.stderr.count("\n") == 1
