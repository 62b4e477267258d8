"""`portscope suggest`: safe ports for a new server, with the reasons."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..suggest import SuggestResult

from .common import SEED, emit_json, json_option, netns_of, netns_option, nonblank, verbose, want_json

PROTOS = ("tcp", "udp", "sctp", "dccp")


@click.command()
@click.option("--count", "-n", default="3", show_default=True, metavar="N", help="How many ports.")
@click.option("--proto", "protos", multiple=True, type=click.Choice(PROTOS, case_sensitive=False),
              help="Transport(s) the server will use (repeatable; default tcp). Decides which IANA "
                   "assignments to avoid; freeness is always checked for TCP and UDP.")
@click.option("--allow-registered", is_flag=True, help="Also suggest ports IANA assigned to some service.")
@click.option("--privileged", is_flag=True,
              help="Suggest privileged ports (below ip_unprivileged_port_start) instead.")
@click.option("--allow-dynamic", is_flag=True, help="Also search IANA's dynamic range 49152-65535.")
@click.option("--range", "search", metavar="LOW-HIGH", callback=nonblank, help="Only search inside this range.")
@click.option("--port", "insist", metavar="N", callback=nonblank,
              help="Judge this one port instead; prints the command that protects it if it is "
                   "inside the ephemeral range.")
@click.option("--seed", type=SEED, help="Make the random choice repeatable.")
@json_option
@netns_option
def suggest(count, protos, allow_registered, privileged, allow_dynamic, search, insist, seed, json_out, netns) -> None:
    """Suggest ports for a new server: free now, outside the ephemeral range,
    unprivileged unless asked, and not assigned by IANA; says why each is safe.

    Exit 0 when ports were found (or --port is safe), 1 when none (or --port is not safe).
    """
    from .. import suggest as sg
    from ..ports import PortRange, parse_port

    ns = netns_of(netns)
    protos = tuple(p.lower() for p in protos) or ("tcp",)
    if insist is not None:
        res = sg.check(parse_port(insist), protos, allow_registered=allow_registered, privileged=privileged,
                       allow_dynamic=allow_dynamic, netns=ns)
    else:
        from ..numparse import parse_whole
        n = parse_whole(count, "--count", 1, 1000)
        res = sg.suggest(n, protos, allow_registered=allow_registered, privileged=privileged,
                         allow_dynamic=allow_dynamic, search=PortRange.parse(search) if search else None,
                         netns=ns, seed=seed)
    if want_json(json_out):
        emit_json(res.to_json())
    else:
        click.echo(render(res, insist is not None))
        for w in res.warnings:
            click.echo(f"portscope: warning: {w}", err=True)
    ok = all(s.safe for s in res.ports) if insist is not None else bool(res.ports)
    if not ok:
        raise SystemExit(1)


def render(res: SuggestResult, check_mode: bool) -> str:
    """The suggested ports with their reasons, or (check_mode) the verdict on one port."""
    protos = "/".join(res.protos)
    out = []
    if check_mode:
        s = res.ports[0]
        out.append(f"port {s.port} ({protos}): " + ("safe for a new server" if s.safe else "not safe as it is"))
        for p in s.problems:
            out.append(f"  ✗ {p}")
        for r in s.reasons:
            out.append(f"  ✓ {r}")
        if s.commands:
            out.append("to protect it from outgoing connections (reserved ports are skipped by automatic assignment):")
            out.extend(f"  {c}" for c in s.commands)
        return "\n".join(out)
    where = f" in netns {res.netns}" if res.netns else ""
    if not res.ports:
        return f"no safe {protos} port found in {res.searched}{where}"
    out.append(f"{len(res.ports)} {protos} port(s) for a new server{where} "
               f"(searched {res.searched}: {res.eligible} passed every rule):")
    for s in res.ports:
        out.append(f"{s.port}")
        out.extend(f"  - {r}" for r in s.reasons)
    out.append("free now is not a reservation: start the server soon, or reserve the port.")
    if verbose() and res.sockets_backend:
        out.append(f"(sockets read via {res.sockets_backend})")
    return "\n".join(out)
