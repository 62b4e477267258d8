"""The `portscope` command: a thin click layer over the library.

Subcommands load lazily (one module per command under cli/), so `portscope conns`
does not pay for importing the exporter, the simulator or rich.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Sequence

import click

from .. import __version__

# name -> (module under portscope.cli, attribute, one-line help)
COMMANDS = {
    "report": ("report", "report", "One-screen health report of this host's ports (the main job)."),
    "range": ("range_cmd", "range_group", "Show or change the ephemeral port range."),
    "reserve": ("reserve", "reserve", "List, add or remove reserved ports (ip_local_reserved_ports)."),
    "port": ("port", "port", "Classify a port number or look up a service name."),
    "suggest": ("suggest", "suggest", "Suggest safe ports for a new server."),
    "conns": ("conns", "conns", "List sockets with their 4-tuples, ephemeral side and owner."),
    "pressure": ("pressure", "pressure", "Ephemeral-port use per destination, forecast and remedies."),
    "top": ("top", "top", "Live view of ephemeral-port pressure."),
    "exporter": ("exporter", "exporter", "Serve Prometheus metrics (or write a textfile)."),
    "simulate": ("simulate", "simulate", "Simulate the kernel's port allocator at scale."),
    "lab": ("lab", "lab", "Reproduce port exhaustion safely in a private network namespace."),
    "quiz": ("quiz", "quiz", "Learn about ports with a short quiz."),
    "namespaces": ("namespaces", "namespaces", "Every network namespace on the host, with its container and pod."),
    "nat": ("nat", "nat", "Conntrack and NAT: SNAT port use, NAT-held ports, conntrack fill."),
    "watch": ("watch", "watch", "Connect/bind failures for want of a port, as they happen (eBPF)."),
}


class LazyGroup(click.Group):
    """The top-level group: commands come from COMMANDS and are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Command names in COMMANDS order, leaving out any whose module is absent."""
        return [n for n, (mod, _, _) in COMMANDS.items() if self._available(mod)]

    @staticmethod
    def _available(mod: str) -> bool:
        return importlib.util.find_spec(f"portscope.cli.{mod}") is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Import the command's module now (None for an unknown name), with -v accepted after it."""
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        if not self._available(mod):
            return None
        cmd = getattr(importlib.import_module(f"portscope.cli.{mod}"), attr)
        _accept_verbose(cmd)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a closed stdout pipe is a quiet exit 0 (see the comment)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # click would print a blank line and turn it into Abort ("aborted"): keep it
            # one line, the same for every command
            raise _Interrupted() from None
        except BrokenPipeError:
            # the reader went away (`portscope conns | head`): not our failure, and click
            # would turn it into exit 1, which means something else here
            from ..front.views import quiet_stdout
            quiet_stdout()
            raise click.exceptions.Exit(0)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The Commands section of --help, from the table."""
        # help from the table, so `--help` does not import every command
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past click's own KeyboardInterrupt handling."""


def _check_netns(ctx, param, value):
    from .common import check_netns
    return check_netns(ctx, param, value)


def _set_verbose(ctx, param, value):
    if value:
        ctx.find_root().ensure_object(dict)["verbose"] = True


def _accept_verbose(cmd) -> None:
    """Let -v/--verbose follow the command too, as --json and --netns do."""
    if not any(isinstance(p, click.Option) and "-v" in p.opts for p in cmd.params):
        cmd.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                                       callback=_set_verbose, help="Same as the global -v."))
    for sub in getattr(cmd, "commands", {}).values():
        _whole_short_help(sub)
        _accept_verbose(sub)


def _whole_short_help(cmd) -> None:
    """A group's command list shows each subcommand's first paragraph whole: click's default
    stops at the first '.', so "Add PORTS (e.g. 8080,...)" became "Add PORTS (e.g.", and
    cuts at 45 characters with '...'."""
    if cmd.short_help is None and cmd.help:
        first = cmd.help.split("\n\n")[0]
        cmd.short_help = " ".join(first.replace("\b", " ").split())


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="portscope")
@click.option("--json", "json_out", is_flag=True, help="Print JSON (same as --json on the command).")
@click.option("--netns", metavar="NAME|pid:PID", callback=lambda c, p, v: _check_netns(c, p, v),
              help="Look inside another network namespace (Linux).")
@click.option("-v", "--verbose", is_flag=True, help="Say which backend and sources were used.")
@click.pass_context
def cli(ctx, json_out, netns, verbose) -> None:
    """Show and control how this machine hands out port numbers.

    \b
    Exit codes: 0 ok, 1 `suggest` found no safe port or `lab` saw the kernel
    differ from the prediction, 2 bad input, 3 not permitted (needs root or a
    capability), 4 unsupported on this platform, 5 could not write a file
    (disk full, read-only file system; the message names it), 130 interrupted.
    `pressure --check` uses the monitoring-plugin codes instead (0 OK,
    1 WARNING, 2 CRITICAL, 3 UNKNOWN). JSON keys: docs/json.md.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(json=json_out, netns=netns)
    ctx.obj.setdefault("verbose", False)
    ctx.obj["verbose"] |= verbose


def main(argv: Sequence[str] | None = None) -> None:
    """The `portscope` entry point: every error is one line and a fixed exit code (errors.py),
    never a traceback."""
    from ..errors import PortscopeError

    args = sys.argv[1:] if argv is None else list(argv)
    if not args:                       # bare `portscope`: the help, not a usage error
        args = ["--help"]
    try:
        rv = cli.main(args=args, prog_name="portscope", standalone_mode=False)
    except PortscopeError as e:
        click.echo(f"portscope: error: {e}", err=True)
        sys.exit(e.exit_code)
    except _Interrupted:
        click.echo("portscope: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Abort:
        click.echo("portscope: aborted", err=True)
        sys.exit(130)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:
        click.echo(e.ctx.get_help())      # `portscope lab`: the group's help, not an error
        sys.exit(0)
    except click.UsageError as e:
        # one line, like every other error; the help is one flag away
        where = e.ctx.command_path if e.ctx else "portscope"
        click.echo(f"portscope: error: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"portscope: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        from ..front.views import quiet_stdout
        quiet_stdout()
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("portscope: interrupted", err=True)
        sys.exit(130)
    # without standalone mode, click returns ctx.exit(n)'s code instead of exiting
    if isinstance(rv, int) and rv:
        sys.exit(rv)
