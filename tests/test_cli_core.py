import subprocess
import sys

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
    import os
    exe = os.path.join(os.path.dirname(sys.executable), "portscope")
    r = subprocess.run([exe, "range", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"ephemeral"' in r.stdout


def test_main_keeps_ctx_exit_codes(monkeypatch):
    # standalone_mode=False makes click return ctx.exit(n)'s code; main() must not drop it
    import click
    import pytest

    import portscope.cli as pcli

    @click.command()
    @click.pass_context
    def fake(ctx):
        ctx.exit(5)

    monkeypatch.setattr(pcli, "cli", fake)
    with pytest.raises(SystemExit) as exc:
        pcli.main([])
    assert exc.value.code == 5
