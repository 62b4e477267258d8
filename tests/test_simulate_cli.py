"""`portscope simulate` through the real entry point: the JSON contract, config
files, plots, the plan, and one-line errors with exit code 2."""
from __future__ import annotations

import json

import pytest


def js(cli, *args):
    code, out, err = cli("simulate", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_json_contract(cli):
    d = js(cli, "--range", "40000-40039", "--reserved", "40010,40021", "--connects", "50")
    for key in ("connects", "failures", "first_failure_index", "ports_used_max", "search_steps"):
        assert key in d
    assert set(d["search_steps"]) >= {"mean", "p99", "max"}
    assert d["connects"] == 50 and d["failures"] == 12 and d["first_failure_index"] == 38
    assert d["ports_used_max"] == 38 and d["search_steps"]["max"] == 40
    s = d["settings"]
    assert s["range"] == "40000-40039" and s["reserved"] == "40010,40021" and s["algorithm"] == "linux"
    assert "timeseries" not in d


def test_no_failure_gives_null_index(cli):
    d = js(cli, "--range", "40000-40039", "--connects", "10")
    assert d["failures"] == 0 and d["first_failure_index"] is None


def test_global_json_flag_and_timeseries(cli):
    code, out, err = cli("--json", "simulate", "--range", "40000-40299", "--rate", "10/s",
                         "--lifetime", "0", "--duration", "40", "--timeseries", "--interval", "5")
    assert code == 0, err
    d = json.loads(out)
    ts = d["timeseries"]
    assert ts["t"][:3] == [5.0, 10.0, 15.0]
    assert ts["time_wait"][0] == 50  # 10/s for 5 s, all in TIME_WAIT
    assert sum(ts["failures"]) == d["failures"] > 0
    assert d["settings"]["rate"] == 10.0


def test_text_output(cli):
    code, out, err = cli("simulate", "--range", "40000-40039", "--reserved", "40010,40021", "--connects", "45",
                         "--algorithm", "linux-bind")
    assert code == 0, err
    assert "first failure #38" in out and "linux-bind" in out


def test_config_yaml_and_toml_match_options(cli, tmp_path):
    y = tmp_path / "w.yaml"
    y.write_text("range: 40000-40299\nrate: 20/s\nlifetime: exp:2\nduration: 30\ndestinations: 2\nseed: 3\n"
                 "arrivals: poisson\n")
    t = tmp_path / "w.toml"
    t.write_text('[simulate]\nrange = "40000-40299"\nrate = 20\nlifetime = "exp:2"\nduration = 30\n'
                 'destinations = 2\nseed = 3\narrivals = "poisson"\n')
    a = js(cli, "--config", str(y))
    b = js(cli, "--config", str(t))
    c = js(cli, "--range", "40000-40299", "--rate", "20/s", "--lifetime", "exp:2", "--duration", "30",
           "--destinations", "2", "--seed", "3", "--arrivals", "poisson")
    for d in (a, b, c):
        d.pop("elapsed_s")
    assert a == b == c
    # options win over the file
    d = js(cli, "--config", str(y), "--seed", "4")
    assert d["settings"]["seed"] == 4


def test_plot_writes_a_png(cli, tmp_path):
    out = tmp_path / "o.png"
    code, _, err = cli("simulate", "--range", "40000-40299", "--rate", "10/s", "--duration", "40",
                       "--plot", str(out))
    assert code == 0, err
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


@pytest.mark.parametrize("args,fits", [
    (("--range", "40000-40299", "--rate", "10/s", "--duration", "120"), False),
    (("--range", "40000-40299", "--rate", "4/s", "--duration", "120"), True),
    (("--rate", "2000/s", "--destinations", "2", "--duration", "120", "--lifetime", "exp:1"), False),
    (("--rate", "1000/s", "--destinations", "4", "--duration", "120", "--lifetime", "exp:1"), True),
    (("--range", "40000-40299", "--rate", "10/s", "--duration", "120", "--algorithm", "linux-bind",
      "--destinations", "5"), False),
])
def test_plan_agrees_with_simulation(cli, args, fits):
    d = js(cli, "--plan", *args)
    p, s = d["plan"], d["simulation"]
    assert p["fits"] is fits
    assert s["agrees"] is True
    assert (s["failures"] == 0) is fits
    if not fits:
        assert abs(s["first_failure_time"] - p["onset_s"]) <= 0.1 * p["onset_s"]
        # the remedies the plan names were simulated too, and they hold
        if p["sources_needed"] is not None:
            assert s["with_sources_needed"]["failures"] == 0 and s["with_sources_needed"]["agrees"]
            assert s["with_tw_reuse"]["agrees"]
        else:
            assert "with_sources_needed" not in s  # bind(0): more source IPs do not help


def test_plan_numbers():
    from portscope.simulate import workload
    from portscope.simulate.plan import plan
    p = plan(workload(rate="5000/s", destinations=4, duration=120)).to_json()
    assert p["capacity_per_pair"] == 28232
    assert p["rate_per_pair"] == 1250 and p["hold_s"] == 60
    assert p["need_per_pair"] == 75000 and p["sources_needed"] == 3
    assert p["max_rate_per_pair"] == pytest.approx(28232 / 60, abs=0.01)
    assert p["onset_s"] == pytest.approx(28232 / 1250, rel=1e-3)
    assert p["reuse"]["fits"] is True


@pytest.mark.parametrize("args,msg", [
    (("--range", "40039-40000", "--connects", "5"), "above its end"),
    (("--range", "x", "--connects", "5"), "range"),
    (("--reserved", "1,,2", "--connects", "5"), "empty item"),
    (("--lifetime", "exp:-1", "--rate", "5/s", "--duration", "5"), "lifetime"),
    (("--rate", "fast", "--duration", "5"), "rate"),
    (("--rate", "5/s",), "--duration"),
    (("--destinations", "0", "--connects", "5"), "destinations"),
    (("--config", "/nonexistent/w.yaml",), "cannot read"),
    (("--rate", "1000000/s", "--duration", "1000"), "limit"),
    (("--rate", "10/s", "--duration", "100", "--interval", "0.00001", "--timeseries"), "time-series points"),
    (("--algorithm", "udp", "--socket-range", "40000-40010", "--connects", "5"), "IP_LOCAL_PORT_RANGE"),
])
def test_bad_input_is_one_line_exit_2(cli, args, msg):
    code, out, err = cli("simulate", *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portscope: error:") and msg in lines[0]


def test_bad_config_key_and_syntax(cli, tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("rnage: 1-2\n")
    code, _, err = cli("simulate", "--config", str(f))
    assert code == 2 and "unknown key 'rnage'" in err
    f.write_text("range: [1, 2\n")
    code, _, err = cli("simulate", "--config", str(f))
    assert code == 2 and "cannot parse" in err and len(err.strip().splitlines()) == 1
    g = tmp_path / "w.toml"
    g.write_text("range = \n")
    code, _, err = cli("simulate", "--config", str(g))
    assert code == 2 and "cannot parse" in err
    f.write_text("range: 40000-40039\nconnects: lots\n")
    code, _, err = cli("simulate", "--config", str(f))
    assert code == 2 and "connects" in err


def test_from_host_reads_this_hosts_range(cli):
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = f.read().split()
    d = js(cli, "--from-host", "--connects", "5")
    assert d["settings"]["range"] == f"{low}-{high}"
    assert d["connects"] == 5 and d["failures"] == 0


def test_from_host_in_a_namespace(cli, netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "41000 41999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "41500")
    d = json.loads(cli("--netns", netns.name, "simulate", "--from-host", "--connects", "1200", "--json")[1])
    assert d["settings"]["range"] == "41000-41999" and d["settings"]["reserved"] == "41500"
    assert d["first_failure_index"] == 999


def test_text_timeseries(cli):
    code, out, err = cli("simulate", "--range", "40000-40299", "--rate", "10/s", "--duration", "40",
                         "--interval", "10", "--timeseries")
    assert code == 0, err
    rows = out[out.index("t_s\t"):].strip().splitlines()
    assert rows[1].split("\t") == ["10", "0", "100", "100", "0"]
    assert rows[-1].split("\t")[0] == "40"
