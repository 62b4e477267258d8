import subprocess
import sys

from conftest import PORTSCOPE
from portscope import __version__


def test_version_and_help(cli):
    code, out, _ = cli("--version")
    assert code == 0 and __version__ in out
    code, out, _ = cli("--help")
    assert code == 0 and "Exit codes" in out


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "portscope", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


def test_unknown_command_is_usage_error(cli):
    code, _, err = cli("no-such-command")
    assert code == 2 and "Traceback" not in err


def test_console_script_runs_a_subcommand():
    """The installed entry point, in a fresh process (the in-process fixture hides import-order bugs)."""
    r = subprocess.run([PORTSCOPE, "range", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"ephemeral"' in r.stdout


def test_main_keeps_ctx_exit_codes(monkeypatch):
    # standalone_mode=False makes click return ctx.exit(n)'s code; main() must not drop it
    import click
    import pytest

    import portscope.cli as pcli

    @click.command()
    @click.option("--go", is_flag=True)
    @click.pass_context
    def fake(ctx, go):
        ctx.exit(5)

    monkeypatch.setattr(pcli, "cli", fake)
    with pytest.raises(SystemExit) as exc:
        pcli.main(["--go"])
    assert exc.value.code == 5


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_usage_errors_are_one_line(cli):
    for args in (["range", "set", "40000"], ["suggest", "--proto", "bogus"], ["no-such-command"],
                 ["conns", "--limit", "x"], ["--bogus"]):
        code, out, err = cli(*args)
        assert code == 2, args
        assert len(_lines(err)) == 1 and err.startswith("portscope: error: "), (args, err)
        assert "--help" in err and out == ""


def test_bare_command_prints_help_and_succeeds(cli):
    code, out, _ = cli()
    assert code == 0 and "Commands:" in out


def test_verbose_after_the_command(cli):
    code, _, err = cli("conns", "--count", "-v")
    assert code == 0 and "backend" in err
    code, _, err = cli("conns", "--count")
    assert code == 0 and "backend" not in err


def test_two_different_namespaces_are_refused(cli):
    code, out, err = cli("--netns", "a", "range", "--netns", "b")
    assert code == 2 and _lines(err) == [
        "portscope: error: two namespaces given: --netns a before the command and --netns b after it"]


def test_bare_group_prints_its_help(cli):
    code, out, err = cli("lab")
    assert code == 0 and "exhaust" in out and err == ""


def test_a_reader_that_goes_away_is_not_an_error():
    """`portscope quiz --list | head -1`: exit 0 and nothing on stderr (click alone says 1)."""
    import os
    r, w = os.pipe()
    os.close(r)                          # no reader at all: the first write fails with EPIPE
    p = subprocess.run([PORTSCOPE, "quiz", "--list", "--no-live"], stdout=w, stderr=subprocess.PIPE, text=True)
    os.close(w)
    assert p.returncode == 0 and p.stderr == "", p.stderr
