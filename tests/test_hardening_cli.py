"""Issue 12's hardening, end to end through the real entry point: each class of bad input is
refused by one shared mechanism for every command that takes it (exit 2, one line, nothing
changed). The commands are enumerated from the CLI itself, so a new command is covered."""
from __future__ import annotations

import click
import pytest

from conftest import host_sysctls
from portscope import netns as pnetns
from portscope.cli import COMMANDS, LazyGroup
from portscope.errors import BadInput


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("portscope: error: ") and "Traceback" not in err
    return lines[0]


def command_paths(opt: str) -> list[tuple[str, ...]]:
    """Every (sub)command path whose own parameters include option `opt`."""
    out = []

    def walk(cmd, path):
        if any(isinstance(p, click.Option) and opt in p.opts for p in cmd.params):
            out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    g = LazyGroup()
    for name in COMMANDS:
        cmd = g.get_command(None, name)
        if cmd is not None:
            walk(cmd, (name,))
    return out


NETNS_PATHS = command_paths("--netns")


def test_the_netns_commands_are_found():
    assert {("range", "set"), ("reserve", "add"), ("exporter",), ("conns",), ("pressure",)} <= set(NETNS_PATHS)


@pytest.mark.parametrize("blank", ["", " ", "\t"])
@pytest.mark.parametrize("path", NETNS_PATHS, ids=" ".join)
def test_blank_netns_is_bad_input_for_every_command(cli, path, blank):
    before = host_sysctls()
    for args in ((*path, "--netns", blank), ("--netns", blank, *path)):
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert "--netns needs a name or pid:PID" in one_line_error(err)
    assert host_sysctls() == before


def test_blank_netns_refused_when_it_would_change_the_host(cli):
    code, out, err = cli("--netns", "", "range", "set", "40000", "50000", "--dry-run")
    assert code == 2 and "sysctl" not in out
    code, out, err = cli("exporter", "--netns", "lo-ns-that-is-not-checked", "--netns", "", "--json")
    assert code == 2 and "--netns needs" in one_line_error(err)


@pytest.mark.parametrize("spec", ["", "  ", "\n", "pid:", "pid:0", "pid:٤", " a", "a/b", ".."])
def test_library_refuses_blank_or_malformed_specs(spec):
    with pytest.raises(BadInput):
        pnetns.check_spec(spec)
    with pytest.raises(BadInput):
        with pnetns.entered(spec):
            pass


def test_library_none_means_here():
    import os
    here = os.stat("/proc/thread-self/ns/net").st_ino
    with pnetns.entered(None):
        assert os.stat("/proc/thread-self/ns/net").st_ino == here


# ------------------------------------------------------------------ numeric options (defect 4, 10)

def numeric_options() -> list[tuple[tuple[str, ...], str]]:
    from portscope.cli.common import Number
    out = []

    def walk(cmd, path):
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, Number):
                out.append((path, p.opts[0]))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    g = LazyGroup()
    for name in COMMANDS:
        walk(g.get_command(None, name), (name,))
    return out


def test_no_numeric_option_bypasses_the_shared_type():
    """click's int/float accept '٣', '1_0', 'inf' and 'nan': every numeric option must use
    common.Number instead."""
    loose = (click.types.IntParamType, click.types.FloatParamType)
    bad = []

    def walk(cmd, path):
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, loose):
                bad.append(" ".join(path) + " " + p.opts[0])
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    g = LazyGroup()
    for name in COMMANDS:
        walk(g.get_command(None, name), (name,))
    assert not bad, bad
    assert len(numeric_options()) >= 25


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e400", "١٠", "1_0", "0x10", "", "²"])
@pytest.mark.parametrize("path,opt", numeric_options(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_numeric_option_refuses_non_finite_and_non_ascii(cli, path, opt, value):
    code, out, err = cli(*path, opt, value)
    assert code == 2, (path, opt, value, out, err)
    assert opt in one_line_error(err)


@pytest.mark.parametrize("args", [
    ("simulate", "--rate", "5/s", "--duration", "1e308"),
    ("simulate", "--rate", "1e308/s", "--duration", "2"),
    ("simulate", "--rate", "1e200/s", "--duration", "1e200"),
    ("simulate", "--rate", "١/s", "--duration", "2"),
])
def test_simulate_that_would_never_end_is_refused_at_once(cli, args):
    import time
    t = time.monotonic()
    code, out, err = cli(*args)
    assert code == 2 and time.monotonic() - t < 5
    one_line_error(err)


def test_seed_rule_is_the_same_for_suggest_and_simulate(cli):
    a = one_line_error(cli("suggest", "--seed", "-1")[2]).split(" (see ")[0]
    b = one_line_error(cli("simulate", "--connects", "5", "--seed", "-1")[2]).split(" (see ")[0]
    assert a == b == "portscope: error: --seed must be a non-negative whole number, got -1"


def test_interval_limits_are_one_rule(cli):
    msgs = {one_line_error(cli(*c, "--interval", "0.05")[2]).split(" (see ")[0]
            for c in (("pressure",), ("top",), ("exporter",))}
    assert msgs == {"portscope: error: --interval must be in 0.1..86400 seconds, got 0.05"}


# ------------------------------------------------------------------ ASCII digits only (defect 10)

ODD_NUMBERS = ["٤٠٠٠٠", "４００００", "40000²", "²", "0x50", "+80", "4_0000", "४००००"]


@pytest.mark.parametrize("text", ODD_NUMBERS)
def test_port_parsers_take_ascii_digits_only(text):
    from portscope.host._common import check_range, parse_ports
    from portscope.ports import PortRange, PortSet, parse_port
    for f in (parse_port, PortRange.parse, PortSet.parse, parse_ports, lambda t: check_range(t, "50000"),
              lambda t: check_range("1024", t)):
        with pytest.raises(BadInput):
            f(text)


@pytest.mark.parametrize("text", ODD_NUMBERS)
def test_writes_with_odd_digits_change_nothing_in_the_kernel(cli, netns, text):
    before = (netns.sysctl("net.ipv4.ip_local_port_range"), netns.sysctl("net.ipv4.ip_local_reserved_ports"))
    for args in (("range", "set", text, "50000"), ("range", "set", "40000", text), ("reserve", "add", text),
                 ("reserve", "add", f"8080,{text}")):
        code, out, err = cli("--netns", netns.name, *args)
        assert code == 2, (args, out, err)
        assert "digits 0-9" in one_line_error(err) or "not a port" in err
    after = (netns.sysctl("net.ipv4.ip_local_port_range"), netns.sysctl("net.ipv4.ip_local_reserved_ports"))
    assert after == before


def test_ascii_still_works_and_negative_ports_say_so(cli, netns):
    code, out, err = cli("--netns", netns.name, "reserve", "add", "8080")
    assert code == 0, err
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == "8080"
    code, out, err = cli("reserve", "add", "-5", "--dry-run")
    assert code == 2 and "negative" in one_line_error(err) and "got ''" not in err


@pytest.mark.parametrize("text", ["40000 ٥٠٠٠٠", "４ 5", "40000\t50000²"])
def test_procfs_range_with_odd_digits_is_a_read_error(text):
    from portscope.errors import SystemReadError
    from portscope.host.linux import parse_range
    from portscope.host.linux import parse_sysctl_int as parse_int
    with pytest.raises(SystemReadError):
        parse_range(text)
    with pytest.raises(SystemReadError):
        parse_int("ip_unprivileged_port_start", next(t for t in text.split() if not t.isascii()))


# ------------------------------------------------------------------ smaller items (defect 13)

def test_group_help_lists_each_subcommand_whole(cli):
    g = LazyGroup()
    groups = [(n,) for n in COMMANDS if getattr(g.get_command(None, n), "commands", None)]
    assert {("range",), ("reserve",), ("lab",)} <= set(groups)
    for path in groups:
        code, out, err = cli(*path, "--help")
        assert code == 0, err
        listing = " ".join(out.split("Commands:")[1].split())
        for name, sub in g.get_command(None, path[0]).commands.items():
            first = " ".join(sub.help.split("\n\n")[0].replace("\b", " ").split())
            assert f"{name} {first}" in listing, (path, name, listing)
        assert "..." not in listing and "(e.g. " not in listing.replace("(e.g. 8080", "")


def _run_with_tty_stderr(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout piped); return code, stdout, tty text."""
    import os
    import pty
    import subprocess
    import sys
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "portscope", *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:          # EIO: the child closed its side
            break
        if not b:
            break
        chunks.append(b)
    out = p.stdout.read().decode()
    code = p.wait(timeout=120)
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


def test_simulate_plan_shows_progress_on_a_tty_only(cli):
    args = ["simulate", "--rate", "5000/s", "--destinations", "4", "--plan"]   # ~10 s of simulation
    code, out, tty = _run_with_tty_stderr(args)
    assert code == 0 and "verdict" in out
    assert "simulating: checking the plan" in tty and "%" in tty
    assert tty.endswith("\r\x1b[K")              # erased at the end: the result starts clean
    assert "simulating" not in out               # never on stdout
    code, out2, err = cli(*args)                 # not a terminal: not a byte of progress
    assert code == 0 and "simulating" not in err and err == ""


# ------------------------------------------------------------------ the same class elsewhere: blank values

# where an empty value is a real value: an empty port list
EMPTY_IS_A_VALUE = {("simulate", "--reserved"), ("simulate", "--listeners"), ("lab", "exhaust", "--reserve")}


def value_options():
    out = []

    def walk(cmd, path):
        for p in cmd.params:
            if (isinstance(p, click.Option) and not p.is_flag and not p.count
                    and isinstance(p.type, (click.types.StringParamType, click.Path))
                    and p.opts[0] != "--netns"):
                out.append((path, p.opts[0]))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    g = LazyGroup()
    for name in COMMANDS:
        walk(g.get_command(None, name), (name,))
    return [(p, o) for p, o in out if (*p, o) not in EMPTY_IS_A_VALUE]


def test_value_options_are_found():
    found = {(" ".join(p), o) for p, o in value_options()}
    assert {("exporter", "--web-config"), ("exporter", "--textfile"), ("simulate", "--config"),
            ("simulate", "--plot"), ("suggest", "--range")} <= found


@pytest.mark.parametrize("path,opt", value_options(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_a_blank_value_is_never_taken_as_not_given(cli, path, opt):
    """`--web-config "$CFG"` with CFG empty used to serve without auth; `--textfile ''` to serve
    HTTP instead of writing; `--plot ''`, `--config ''`, `suggest --range ''` were ignored."""
    code, out, err = cli(*path, opt, "")
    assert code == 2, (path, opt, out, err)
    one_line_error(err)


def test_plot_writes_a_png_where_asked_or_refuses_before_the_run(cli, tmp_path):
    import os
    code, out, err = cli("simulate", "--connects", "10", "--plot", str(tmp_path))
    assert code == 2 and "ending in .png" in one_line_error(err)
    assert not os.path.exists(str(tmp_path) + ".png")          # matplotlib used to add .png itself
    target = tmp_path / "out.png"
    code, out, err = cli("simulate", "--connects", "10", "--plot", str(target))
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == ["out.png"]
