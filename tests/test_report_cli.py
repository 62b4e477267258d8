"""`portscope report` and `portscope pressure` through the real entry point, on real namespaces."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import DESTS, PYTHON_M


@pytest.fixture
def loaded(netns, driver):
    """A namespace with a 20-port range, a listener on 5001 and a driver to open sockets."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
    driver(op="listen", port=5001)
    return netns, driver


def test_report_clean_namespace(cli, netns):
    code, out, err = cli("report", "--netns", netns.name)
    assert code == 0, err
    assert "portscope report (netns " in out and ": OK" in out
    assert "Ephemeral range   32768-60999  28232 ports" in out
    assert "at most 471 new connections/s" in out
    assert "none: nothing to fix" in out
    assert "no outgoing connection uses the ephemeral range" in out


def test_report_json_clean(cli, netns):
    code, out, _ = cli("--json", "report", "--netns", netns.name)
    assert code == 0
    j = json.loads(out)
    assert j["range"] == {"low": 32768, "high": 60999, "size": 28232, "same_parity": False}
    assert j["tcp_tw_reuse"] == int(netns.sysctl("net.ipv4.tcp_tw_reuse"))
    assert j["headline"]["worst_destination"] is None and j["headline"]["status"] == "ok"
    assert j["headline"]["global"]["in_use"] == 0 and j["findings"] == [] and j["destinations"] == []


def test_report_shows_problem_and_fix(cli, loaded):
    ns, drive = loaded
    drive(op="listen", port=40010)
    assert drive(op="open", dests=DESTS[:1], n=18)["opened"] == [18]
    code, out, err = cli("report", "--netns", ns.name)
    assert code == 0, err
    assert ": WARNING" in out                  # 94.7% is under the 95% critical line
    assert "Worst destination tcp 127.0.0.1 -> 127.0.0.1:5001: 18 of 19 ports (94.7%)" in out
    assert "[WARNING] listener-in-range" in out and 'ip_local_reserved_ports="40010"' in out
    assert "[WARNING] range-small" in out and f"fix: ip netns exec {ns.name} sysctl -w" in out
    code, out, _ = cli("report", "--json", "--netns", ns.name)
    j = json.loads(out)
    w = j["headline"]["worst_destination"]
    assert (w["dst"], w["dport"], w["in_use"], w["capacity"]) == ("127.0.0.1", 5001, 18, 19)
    assert {"destination-high", "listener-in-range", "range-small"} <= {f["id"] for f in j["findings"]}


@pytest.mark.live
def test_report_on_this_host_read_only(cli):
    code, out, err = cli("report")
    assert code == 0, err
    assert "Ephemeral range" in out and "Findings:" in out


@pytest.mark.root
@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_report_as_non_root(nobody_portscope):
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        *nobody_portscope, "report", "--json"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["backend"] == "netlink" and j["range"]["size"] > 0


def test_pressure_json_contract_and_top(cli, loaded):
    ns, drive = loaded
    drive(op="listen", port=5002)
    drive(op="open", dests=DESTS, n=6)
    code, out, _ = cli("pressure", "--json", "--netns", ns.name)
    assert code == 0
    j = json.loads(out)
    assert set(j["global"]) >= {"in_use", "capacity", "utilization"}
    # ground truth: distinct local ports of the client sockets, as ss sees them
    # (connect() may share a port between the two destinations)
    ss = ns.run("ss", "-Htn", "state", "established", "( dport = :5001 or dport = :5002 )").stdout
    ports = {line.split()[2].rsplit(":", 1)[1] for line in ss.splitlines() if line.strip()}
    assert j["global"]["in_use"] == len(ports) and j["global"]["capacity"] == 20
    assert j["global"]["sockets"] == j["global"]["connect"] == 6
    assert len(j["destinations"]) == 2
    for d in j["destinations"]:
        assert set(d) >= {"proto", "src", "dst", "dport", "in_use", "time_wait", "capacity", "utilization"}
        assert (d["in_use"], d["capacity"], d["utilization"]) == (3, 20, 0.15)
    code, out, _ = cli("pressure", "--json", "--top", "1", "--netns", ns.name)
    j = json.loads(out)
    assert len(j["destinations"]) == 1 and j["others"] == {"destinations": 1, "in_use": 3}
    code, out, _ = cli("pressure", "--netns", ns.name)
    assert code == 0 and "SOURCE -> DESTINATION" in out and "127.0.0.1 -> 127.0.0.1:5001" in out


def test_pressure_interval_adds_forecast_keys(cli, loaded):
    ns, drive = loaded
    drive(op="open", dests=DESTS[:1], n=2)
    code, out, err = cli("pressure", "--json", "--interval", "0.3", "--samples", "2", "--netns", ns.name)
    assert code == 0, err
    j = json.loads(out)
    d = j["destinations"][0]
    assert d["rate_per_s"] == 0 and d["seconds_to_exhaustion"] is None
    # loopback with the default tcp_tw_reuse=2: a TIME_WAIT port is reusable after 1 s
    assert j["forecast"]["tcp_tw_reuse"] == 2
    assert d["sustainable_rate_per_s"] == pytest.approx(20 - 2)
    assert j["forecast"]["samples"] == 2
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")          # now 60 s of TIME_WAIT per port
    code, out, err = cli("pressure", "--json", "--interval", "0.3", "--netns", ns.name)
    d = json.loads(out)["destinations"][0]
    assert d["sustainable_rate_per_s"] == pytest.approx((20 - 2) / 60, abs=1e-3)


@pytest.mark.parametrize("n,code,word", [(0, 0, "OK"), (17, 1, "WARNING"), (20, 2, "CRITICAL")])
def test_check_exit_codes(cli, loaded, n, code, word):
    ns, drive = loaded
    if n:
        assert drive(op="open", dests=DESTS[:1], n=n)["opened"] == [n]
    rc, out, _ = cli("pressure", "--check", "--ignore", "range-small", "--netns", ns.name)
    assert rc == code, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"PORTSCOPE {word} - ")
    status, perf = lines[0].split(" | ")
    assert f"worst_utilization={n / 20 * 100:.2f}%;80;95;0;100" in perf
    assert "global_in_use=" in perf
    # --top only trims what is shown: the check still judges every destination
    assert cli("pressure", "--check", "--ignore", "range-small", "--top", "0", "--netns", ns.name)[0] == code


def test_check_custom_thresholds(cli, loaded):
    ns, drive = loaded
    drive(op="open", dests=DESTS[:1], n=5)                     # 25%
    ign = ("--ignore", "range-small", "--netns", ns.name)
    assert cli("pressure", "--check", "--warn", "20", "--crit", "50", *ign)[0] == 1
    assert cli("pressure", "--check", "--warn", "10", "--crit", "25", *ign)[0] == 2
    assert cli("pressure", "--check", "--warn", "30", "--crit", "40", *ign)[0] == 0
    # without --ignore, range-small (a warning) counts like any finding
    assert cli("pressure", "--check", "--warn", "30", "--crit", "40", "--netns", ns.name)[0] == 1
    # --warn/--crit take the place of destination-high's fixed 80% line: 85% under --warn 90 is OK
    drive(op="open", dests=DESTS[:1], n=12)                    # 17/20 = 85%
    rc, out, _ = cli("pressure", "--check", "--warn", "90", "--crit", "99", *ign)
    assert rc == 0 and out.startswith("PORTSCOPE OK - worst 85.0%") and "destination-high (warning)" in out
    assert cli("pressure", "--check", *ign)[0] == 1


@pytest.mark.parametrize("args", [["--warn", "90", "--crit", "80"], ["--warn", "-1"], ["--netns", "no-such-ns-xyz"],
                                  ["--ignore", "no-such-finding"]])
def test_check_unknown(cli, args):
    rc, out, _ = cli("pressure", "--check", *args)
    assert rc == 3 and out.startswith("PORTSCOPE UNKNOWN - ") and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["--check", "--warn", "abc"], "--warn"),            # the shared Number type (cli/common.py)
    (["--check", "--bogus"], "--bogus"),                # click's NoSuchOption
    (["--bogus", "--check"], "--bogus"),
    (["--check", "--crit"], "'--crit'"),                # an option without its value
    (["--check", "--top", "many"], "--top"),
    (["--check", "extra-arg"], "extra-arg"),
])
def test_check_usage_errors_are_unknown_not_critical(cli, args, needle):
    """Exit 2 would read as CRITICAL to Nagios: in check mode a usage error is UNKNOWN."""
    rc, out, err = cli("pressure", *args)
    assert rc == 3, (out, err)
    assert out.startswith("PORTSCOPE UNKNOWN - ") and needle in out and len(out.strip().splitlines()) == 1
    assert err == ""


def test_check_usage_error_with_json_is_a_json_unknown(cli):
    for args in (["pressure", "--check", "--json", "--warn", "abc"], ["--json", "pressure", "--check", "--bogus"]):
        rc, out, err = cli(*args)
        assert rc == 3 and err == ""
        c = json.loads(out)["check"]
        assert (c["status"], c["exit_code"]) == ("UNKNOWN", 3) and c["line"].startswith("PORTSCOPE UNKNOWN - ")


def test_check_status_follows_the_findings(cli, netns, driver):
    """--check and report agree: a listener inside the (default) range makes report say
    WARNING, and so does the plugin; --ignore sets a known finding aside."""
    drive = driver
    drive(op="listen", port=45000)
    j = json.loads(cli("report", "--json", "--netns", netns.name)[1])
    assert j["headline"]["status"] == "warning" and j["headline"]["worst_destination"] is None
    rc, out, _ = cli("pressure", "--check", "--netns", netns.name)
    assert rc == 1 and out.startswith("PORTSCOPE WARNING - ") and "listener-in-range (warning)" in out
    rc, out, _ = cli("pressure", "--check", "--ignore", "listener-in-range", "--netns", netns.name)
    assert rc == 0 and out.startswith("PORTSCOPE OK - ") and "listener-in-range (warning, ignored)" in out


def test_check_json_carries_status_perfdata_and_the_pressure_document(cli, loaded):
    ns, drive = loaded
    drive(op="open", dests=DESTS[:1], n=17)                    # 85%
    for args in (["pressure", "--check", "--json", "--netns", ns.name],
                 ["--json", "pressure", "--check", "--netns", ns.name]):
        rc, out, err = cli(*args)
        j = json.loads(out)
        c = j["check"]
        assert rc == c["exit_code"] == 1 and c["status"] == "WARNING", err
        assert c["line"].startswith("PORTSCOPE WARNING - worst 85.0%")
        perf = {p["label"]: p for p in c["perfdata"]}
        assert perf["worst_utilization"] == {"label": "worst_utilization", "value": 85.0, "uom": "%",
                                             "warn": 80.0, "crit": 95.0, "min": 0, "max": 100}
        assert perf["global_in_use"]["value"] == 17 and perf["global_in_use"]["max"] == 20
        assert c["line"].split(" | ")[1].startswith("worst_utilization=85.00%;80;95;0;100 ")
        assert {r.get("id") for r in c["reasons"]} >= {"range-small", None}    # None: the threshold
        # ... plus the normal pressure document
        assert j["destinations"][0]["in_use"] == 17 and {"global", "findings", "range"} <= set(j)


@pytest.mark.parametrize("args,msg", [
    (["--top", "-1"], "--top"),
    (["--samples", "3"], "--samples needs --interval"),
    (["--interval", "1", "--samples", "1"], "--samples"),
    (["--interval", "0"], "--interval"),
    (["--netns", "no-such-ns-xyz"], "does not exist"),
    (["--warn", "90", "--crit", "80"], "--check"),         # were silently ignored
    (["--crit", "99"], "--check"),
    (["--ignore", "range-small"], "--check"),
])
def test_pressure_bad_input(cli, args, msg):
    rc, out, err = cli("pressure", *args)
    assert rc == 2 and out == ""
    assert err.startswith("portscope: error: ") and msg in err and len(err.strip().splitlines()) == 1


def test_check_warns_on_forecast_exhaustion(cli, netns, driver):
    # 100 ports, no TIME_WAIT reuse: 10 new connections/s runs out in seconds, while the
    # utilization is still under --warn when we look
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    drive = driver
    drive(op="listen", port=5001, serve=True)
    drive(op="rate", dst="127.0.0.1", dport=5001, rate=10, seconds=3)
    rc, out, _ = cli("pressure", "--check", "--interval", "1", "--samples", "2", "--netns", netns.name)
    # the forecast's finding is critical, and so is the plugin's status
    assert rc == 2 and out.startswith("PORTSCOPE CRITICAL - "), out
    assert "destination-forecast-exhaustion (critical)" in out
    assert "runs out in" in out and "seconds_to_exhaustion=" in out and "new_connections_rate=" in out


def test_process_option(cli, loaded):
    ns, drive = loaded
    drive(op="open", dests=DESTS[:1], n=4)
    code, out, err = cli("pressure", "--json", "--process", "--netns", ns.name)
    assert code == 0, err
    procs = json.loads(out)["processes"]
    assert procs[0]["pid"] == drive.p.pid and procs[0]["in_use"] == 4
    code, out, _ = cli("pressure", "--process", "--netns", ns.name)
    assert f"pid {drive.p.pid}" in out


def test_netns_by_pid(cli, loaded):
    ns, drive = loaded
    drive(op="open", dests=DESTS[:1], n=3)
    code, out, err = cli("pressure", "--json", "--netns", f"pid:{drive.p.pid}")
    assert code == 0, err
    j = json.loads(out)
    assert j["global"]["capacity"] == 20 and j["destinations"][0]["in_use"] == 3


def test_socket_read_failure_is_one_line(cli, monkeypatch):
    import portscope.pressure as P

    def broken(*a, **k):
        raise OSError(105, "No buffer space available")
    monkeypatch.setattr(P, "snapshot_in_range", broken)
    rc, out, err = cli("pressure")
    assert rc == 2 and err.strip() == "portscope: error: cannot read the socket table: [Errno 105] No buffer space available"
    rc, out, err = cli("pressure", "--check")
    assert rc == 3 and out.startswith("PORTSCOPE UNKNOWN - cannot read the socket table")


def test_pressure_help_states_the_capacity_rule(cli):
    rc, out, _ = cli("pressure", "--help")
    text = " ".join(out.split())
    assert rc == 0 and "UDP hold theirs for everyone" not in text
    assert "UDP sockets do not reduce TCP capacity" in text
    assert "--warn" in text and "Only with --check" in text


def test_report_rate_headline_and_range_small_agree(cli, netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40090-40094")
    code, out, _ = cli("report", "--netns", netns.name)
    assert code == 0
    assert "at most 1.6 new connections/s without TIME_WAIT reuse (95 usable ports / 60 s)" in out
    [line] = [ln for ln in out.splitlines() if "] range-small:" in ln]
    assert "at most 1.6 new connections/s" in line and "1.7" not in line


def test_report_equal_parity_headline_counts_the_window(cli, netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40010")
    code, out, _ = cli("report", "--netns", netns.name)
    assert "(10 of 11 usable ports connect() can count on / 60 s)" in out


@pytest.mark.parametrize("by_pid", [False, True])
def test_report_remedies_target_the_namespace(cli, loaded, by_pid):
    from test_findings_kernel import assert_remedy_targets
    ns, drive = loaded
    drive(op="listen", port=40010)
    drive(op="open", dests=DESTS[:1], n=18)
    spec = f"pid:{drive.p.pid}" if by_pid else ns.name
    code, out, _ = cli("report", "--netns", spec)
    fixes = [ln.strip()[len("fix: "):] for ln in out.splitlines() if ln.strip().startswith("fix: ")]
    assert len(fixes) >= 3, out                         # destination-high, listener-in-range, range-small
    for fx in fixes:
        assert_remedy_targets(fx, spec)
    code, out, _ = cli("pressure", "--json", "--netns", spec)
    for f in json.loads(out)["findings"]:
        assert_remedy_targets(f["remedy"], spec)
