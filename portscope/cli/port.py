"""`portscope port N|SERVICE`: describe a port, or look a service name up."""
from __future__ import annotations

import re

import click

from ..front.views import port_number, render_port, yes_no
from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json

PROTOS = ("tcp", "udp", "sctp", "dccp")


# ignore_unknown_options: `port -1` must reach our own check (one line, exit 2),
# not click's "no such option"
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="N|SERVICE")
@click.option("--proto", type=click.Choice(PROTOS, case_sensitive=False),
              help="Only this transport (IANA services; TCP/UDP sockets in use).")
@click.option("--owners/--no-owners", default=True, show_default=True,
              help="Show the pid and command of the sockets holding the port.")
@json_option
@netns_option
def port(target, proto, owners, json_out, netns) -> None:
    """Classify port N, or list the ports of IANA service SERVICE.

    \b
    For each port: RFC 6335 class, IANA services, whether binding it needs
    privilege here (ip_unprivileged_port_start, CAP_NET_BIND_SERVICE), whether it
    lies in the ephemeral range or the reserved list, and the sockets bound to it now.
    """
    from .. import portinfo

    ns = netns_of(netns)
    proto = proto.lower() if proto else None
    # \d also matches other scripts' digits: "٨٠" then gets parse_port's digits-only error
    if re.fullmatch(r"\s*[+-]?\d+\s*", target):
        port_number(target, proto, ns, owners, want_json(json_out), verbose())
        return
    found = portinfo.describe_name(target, proto, ns, owners=owners)
    if want_json(json_out):
        emit_json({"service": target, "proto": proto, "ports": [pf.to_json() for pf in found]})
        return
    names = ", ".join(sorted({s.name for pf in found for s in pf.services if s.name.lower() == target.lower()}))
    ports = [pf.port for pf in found]
    click.echo(f"service {names or target}: {_ports_text(ports)}" + (f" ({proto})" if proto else ""))
    if len(found) <= 3:
        for pf in found:
            click.echo("")
            click.echo(render_port(pf, verbose()))
    else:
        click.echo(_summary(found))


def _ports_text(ports: list[int]) -> str:
    if len(ports) > 1 and ports == list(range(ports[0], ports[-1] + 1)):
        return f"ports {ports[0]}-{ports[-1]}"
    return ("port " if len(ports) == 1 else "ports ") + ", ".join(map(str, ports))


def _summary(found) -> str:
    rows = [f"{'PORT':>5}  {'CLASS':<7}  {'PRIV':<4}  {'EPHEM':<5}  {'RESV':<4}  IN USE"]
    for pf in found:
        use = ", ".join(f"{r['proto']}{'6' if r['family'] == 6 else ''} {r['state']}" for r in pf.in_use) or "-"
        rows.append(f"{pf.port:>5}  {pf.port_class:<7}  {yes_no(pf.privileged):<4}  "
                    f"{yes_no(pf.in_ephemeral_range):<5}  {yes_no(pf.reserved):<4}  {use}")
    return "\n".join(rows)
