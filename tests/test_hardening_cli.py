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
