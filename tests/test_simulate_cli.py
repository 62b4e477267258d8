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
    pytest.param(("--rate", "2000/s", "--destinations", "2", "--duration", "120", "--lifetime", "exp:1"), False,
                 marks=pytest.mark.slow),
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
        assert s["with_sources_needed"]["failures"] == 0 and s["with_sources_needed"]["agrees"]
        if p["algorithm"] == "linux-bind":
            # bind(0) pools are source IPs (destinations do not help), and it refuses TIME_WAIT ports
            # whatever tcp_tw_reuse says: no reuse remedy
            assert p["capacity"]["per"] == "source" and p["reuse"] == {} and "with_tw_reuse" not in s
        else:
            assert s["with_tw_reuse"]["agrees"]


def test_in_a_row_demand_is_the_busiest_pool():
    # linux-bind, 2 source IPs x 2 destinations, 6 connects round-robin: source 0 gets 4 of
    # them (pairs 0, 1, 4, 5), source 1 only 2; its 3 ports run out
    from portscope.simulate import workload
    from portscope.simulate.plan import plan
    w = workload(algorithm="linux-bind", range="40000-40003", reserved="40003", destinations=2,
                 sources=2, connects=6)
    p = plan(w).to_json()
    assert p["need_per_pair"] == 4 and p["fits"] is False


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


@pytest.mark.live
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


# ---------------------------------------------------------------------------------------------
# Review fixes: each of these failed before its fix.

def one_line_error(cli, *args, code=2):
    got, out, err = cli("simulate", *args)
    lines = err.strip().splitlines()
    assert got == code and out == "" and len(lines) == 1 and lines[0].startswith("portscope: error:"), (got, err)
    return lines[0]


def test_negative_seed_is_refused_like_quiz(cli, tmp_path):
    assert "--seed must be a non-negative whole number, got -1" in one_line_error(
        cli, "--connects", "10", "--seed", "-1")
    f = tmp_path / "w.yaml"
    f.write_text("connects: 10\nseed: -1\n")
    assert "--seed" in one_line_error(cli, "--config", str(f))


def test_state_does_not_scale_with_destinations_times_sources(cli):
    """10^12 pairs: each value within bounds, the product is not; the state is per
    pool in use, so this is as cheap as one pair."""
    d = js(cli, "--connects", "10", "--destinations", "1000000", "--sources", "1000000")
    assert d["connects"] == 10 and d["failures"] == 0 and d["ports_used_max"] == 10
    d = js(cli, "--connects", "10", "--destinations", "1000000", "--sources", "1000000", "--rate", "5/s",
           "--arrivals", "poisson", "--lifetime", "1")
    assert d["connects"] == 10


def test_memory_follows_sockets_not_pairs():
    import tracemalloc
    from portscope.simulate import run, workload
    w = workload(connects=2000, destinations=10000, sources=1000)
    tracemalloc.start()
    try:
        run(w, timeseries=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak  # one list slot per pair was 80 MB here


def test_runs_that_would_hold_too_many_sockets_are_refused(cli):
    msg = one_line_error(cli, "--connects", "30000000", "--destinations", "10000")
    assert "sockets at once" in msg and "limit is 2e+07" in msg
    msg = one_line_error(cli, "--rate", "100000/s", "--duration", "1000", "--destinations", "1000",
                         "--lifetime", "inf")
    assert "sockets at once" in msg


@pytest.mark.slow
def test_help_examples_run(cli, tmp_path, monkeypatch):
    """Every example in `simulate --help` works as printed (the --plan one had no --duration)."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("simulate", "--help")
    examples = [line.split()[2:] for line in out.splitlines() if line.strip().startswith("portscope simulate ")]
    assert len(examples) >= 3 and any("--plan" in e for e in examples)
    for args in examples:
        code, out, err = cli("simulate", *args)
        assert code == 0 and err == "", (args, err)


def test_plan_without_duration_plans_for_steady_state_and_says_how_long_it_checked(cli):
    args = ("--rate", "500/s", "--range", "40000-40999", "--destinations", "4", "--plan")
    d = js(cli, *args)
    p, s = d["plan"], d["simulation"]
    assert d["settings"]["duration"] is None and s["duration_default"] is True
    assert p["fits"] is False and p["onset_s"] == pytest.approx(1000 / 125, rel=1e-3)
    assert s["simulated_s"] == 90.0  # 1.5 x the 60 s hold time
    assert s["agrees"] and s["with_sources_needed"]["agrees"] and s["with_tw_reuse"]["agrees"]
    code, out, err = cli("simulate", *args)
    assert code == 0 and "no --duration: the check ran" in out and "over 90s" in out
    assert js(cli, *args, "--duration", "60")["simulation"]["duration_default"] is False
    # a plain run still needs an end
    assert "needs --duration" in one_line_error(cli, "--rate", "5/s")


def test_plan_when_the_run_ends_before_the_onset(cli):
    """Demand above capacity, but --duration ends the run first (this crashed on None:g)."""
    code, out, err = cli("simulate", "--range", "40000-40299", "--rate", "5.1/s", "--duration", "40", "--plan")
    assert code == 0, err
    assert "fits within the 40s run, but not at steady state: 306 ports needed of 300" in out
    assert "(agrees with the plan)" in out


@pytest.mark.parametrize("extra", [(), ("--rate", "10/s")])
def test_zero_connects_is_refused(cli, extra):
    assert "--connects must be a whole number >= 1" in one_line_error(cli, "--connects", "0", *extra)


@pytest.mark.parametrize("opt", [("--lifetime", "5"), ("--arrivals", "poisson"), ("--duration", "5"),
                                 ("--time-wait", "30"), ("--tw-reuse", "1"), ("--tw-reuse-delay", "10"),
                                 ("--loopback",)])
def test_rate_only_options_without_rate_are_refused(cli, opt):
    msg = one_line_error(cli, "--range", "40000-40039", "--connects", "50", *opt)
    assert f"{opt[0]} applies to --rate runs only" in msg and "closes none" in msg


def test_rate_only_keys_in_a_config_without_rate(cli, tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("range: 40000-40039\nconnects: 50\nlifetime: 5\n")
    assert "--lifetime applies to --rate runs only" in one_line_error(cli, "--config", str(f))
    f.write_text("range: 40000-40039\nconnects: 50\nloopback: false\n")  # the default is not "given"
    assert js(cli, "--config", str(f))["connects"] == 50


@pytest.mark.parametrize("text,key", [("destinations: 1.5", "--destinations"), ("sources: 2.0", "--sources"),
                                      ("connects: true", "--connects"), ("seed: 1.5", "--seed"),
                                      ("tw_reuse_delay: 0.5\nrate: 5\nduration: 5", "--tw-reuse-delay"),
                                      ("udp_hash_size: 256.5\nalgorithm: udp", "--udp-hash-size"),
                                      ("time_wait: true\nrate: 5\nduration: 5", "--time-wait")])
def test_config_integers_must_be_integers(cli, tmp_path, text, key):
    f = tmp_path / "w.yaml"
    f.write_text("range: 40000-40039\nconnects: 10\n" + text + "\n")
    assert key in one_line_error(cli, "--config", str(f))
    t = tmp_path / "w.toml"
    t.write_text('range = "40000-40039"\nconnects = 10\ndestinations = 1.5\n')
    assert "--destinations: expected a whole number, got 1.5" in one_line_error(cli, "--config", str(t))


@pytest.mark.parametrize("size", ["0", "-1", "3", "64", "131072"])
def test_udp_hash_size_is_a_kernel_size(cli, size):
    msg = one_line_error(cli, "--algorithm", "udp", "--udp-hash-size", size, "--connects", "5")
    assert "power of two from 128 to 65536" in msg and f"got {size}" in msg


def test_udp_hash_size_rule(cli):
    for size in ("128", "65536"):
        assert js(cli, "--algorithm", "udp", "--udp-hash-size", size, "--range", "40000-40039",
                  "--connects", "50")["first_failure_index"] == 40
    assert "applies to --algorithm udp only" in one_line_error(cli, "--udp-hash-size", "256", "--connects", "5")
    code, out, _ = cli("simulate", "--help")
    assert "power of two from 128 to 65536" in " ".join(out.split())


def test_equal_parity_capacity_is_a_band(cli):
    """40000-40010: remaining = 10, so a pool fails holding 10 or 11 ports."""
    d = js(cli, "--range", "40000-40010", "--connects", "20")
    assert d["capacity"]["min"] == d["capacity_per_pair"] == 10 and d["capacity"]["max"] == 11
    assert d["capacity"]["per"] == "pair" and "equal-parity ends" in d["capacity"]["note"]
    assert d["capacity"]["min"] <= d["first_failure_index"] <= d["capacity"]["max"]
    code, out, _ = cli("simulate", "--range", "40000-40010", "--connects", "20")
    assert "capacity  10-11 ports per (source IP, destination)" in out
    # even-size ranges have one number, and no note
    d = js(cli, "--range", "40000-40039", "--connects", "20")
    assert d["capacity"] == {"min": 40, "max": 40, "per": "pair", "note": None}


@pytest.mark.parametrize("connects", ["11", "20"])
def test_plan_agrees_inside_the_capacity_band(cli, connects):
    d = js(cli, "--range", "40000-40010", "--connects", connects, "--plan")
    p, s = d["plan"], d["simulation"]
    assert p["capacity"]["min"] == 10 and p["capacity"]["max"] == 11 and p["onset_s"] == 0.01
    assert s["agrees"] is True
    if connects == "11":  # 11 connects may or may not fail: the latest onset is open
        assert p["onset_s_max"] is None and s["failures"] == 0
    else:
        assert p["onset_s_max"] == 0.011 and s["first_failure_time"] == 0.011


def test_plan_band_with_several_destinations(cli):
    d = js(cli, "--range", "40000-40010", "--connects", "200", "--destinations", "6", "--plan")
    p, s = d["plan"], d["simulation"]
    assert (p["onset_s"], p["onset_s_max"]) == (0.06, 0.066)
    assert s["agrees"] and p["onset_s"] <= s["first_failure_time"] <= p["onset_s_max"]


def test_host_wide_capacity_wording(cli):
    code, out, _ = cli("simulate", "--range", "40000-40039", "--connects", "50", "--algorithm", "udp")
    assert "capacity  40 ports for the whole host" in out
    code, out, _ = cli("simulate", "--range", "40000-40039", "--connects", "50", "--algorithm", "linux-bind")
    assert "capacity  40 ports for the whole host" in out
    assert "first pass odd: 20 before the first even port" in out
    code, out, _ = cli("simulate", "--range", "40000-40039", "--connects", "100", "--algorithm", "linux-bind",
                       "--sources", "2", "--destinations", "3")
    assert "capacity  40 ports per source IP, 80 over 2 source IPs" in out
    d = js(cli, "--range", "40000-40039", "--connects", "100", "--algorithm", "linux-bind", "--sources", "2",
           "--destinations", "3")
    assert d["capacity"]["per"] == "source" and d["ports_used_max"] == 80 and d["failures"] == 20
    code, out, _ = cli("simulate", "--range", "40000-40039", "--connects", "20", "--algorithm", "rfc6056-1")
    assert "(no parity preference)" in out


@pytest.mark.parametrize("args,msg", [
    (("--rate", "inf/s", "--duration", "5"), "the rate must be a finite number of connections per second, got 'inf/s'"),
    (("--rate", "nan", "--duration", "5"), "finite"),
    (("--rate", "5/s", "--duration", "inf"), "--duration must be a finite number of seconds above 0, got inf"),
    (("--rate", "5/s", "--duration", "5", "--interval", "inf"), "--interval must be a finite number"),
    (("--rate", "5/s", "--duration", "5", "--lifetime", "-3"),
     "--lifetime '-3': every number must be finite and >= 0 seconds (use SECONDS, exp:MEAN"),
    (("--rate", "5/s", "--duration", "5", "--lifetime", "exp:-1"), "--lifetime 'exp:-1': every number"),
    (("--rate", "5/s", "--duration", "5", "--lifetime", "uniform:3-1"), "--lifetime 'uniform:3-1': uniform:A-B needs A <= B"),
    (("--rate", "5/s", "--duration", "5", "--lifetime", "weibull:2"), "--lifetime 'weibull:2': not a lifetime"),
])
def test_error_messages_echo_the_input_and_say_what_is_allowed(cli, args, msg):
    line = one_line_error(cli, *args)
    assert msg in line
    assert "fixed:" not in line and ",0.0" not in line


def test_lognormal_with_a_huge_sigma_does_not_overflow(cli):
    d = js(cli, "--rate", "5/s", "--duration", "5", "--lifetime", "lognormal:1,40", "--range", "40000-40299")
    assert d["connects"] == 25


def test_plot_of_a_run_without_connects_warns_nothing(cli, tmp_path):
    """--connects 0 is refused; a Poisson run can still see no arrival at all."""
    import warnings
    out = tmp_path / "p.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, text, err = cli("simulate", "--rate", "0.01/s", "--arrivals", "poisson", "--duration", "1",
                              "--plot", str(out))
    assert code == 0 and err == "" and "connects  0" in text
    assert [str(w.message) for w in caught] == []  # matplotlib warned "cannot be log-scaled"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
