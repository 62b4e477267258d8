"""`portscope port N|SERVICE`: describe a port, or look a service name up."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..portinfo import PortFacts

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json

PROTOS = ("tcp", "udp", "sctp", "dccp")
TEXT_ROWS = 20   # a busy server port can hold thousands of connections: the text shows the first ones
CLASS_TEXT = {"system": "system (well known, 0-1023)", "user": "user (registered, 1024-49151)",
              "dynamic": "dynamic (private/ephemeral, 49152-65535)"}


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
    from ..ports import parse_port

    ns = netns_of(netns)
    proto = proto.lower() if proto else None
    # \d also matches other scripts' digits: "٨٠" then gets parse_port's digits-only error
    if re.fullmatch(r"\s*[+-]?\d+\s*", target):
        pf = portinfo.describe_port(parse_port(target), proto, ns, owners=owners)
        if want_json(json_out):
            emit_json(pf.to_json())
        else:
            click.echo(render(pf))
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
            click.echo(render(pf))
    else:
        click.echo(_summary(found))


def _ports_text(ports: list[int]) -> str:
    if len(ports) > 1 and ports == list(range(ports[0], ports[-1] + 1)):
        return f"ports {ports[0]}-{ports[-1]}"
    return ("port " if len(ports) == 1 else "ports ") + ", ".join(map(str, ports))


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _sock(r: dict) -> str:
    fam = r["local_addr"] if r["family"] == 4 else f"[{r['local_addr']}]"
    s = f"{r['proto']}{'6' if r['family'] == 6 else ''} {r['state']:<11} {fam}:{r['local_port']}"
    if r["remote_port"]:
        rem = r["remote_addr"] if r["family"] == 4 else f"[{r['remote_addr']}]"
        s += f" -> {rem}:{r['remote_port']}"
    if r.get("pid") is not None:
        s += f"  pid {r['pid']} {r.get('command') or ''}".rstrip()
    else:
        s += f"  uid {r['uid']}"
    return s


def render(pf: PortFacts) -> str:
    """`portscope port N`'s text: class, IANA services, privilege, range, reservation, sockets."""
    out = [f"port {pf.port}: {CLASS_TEXT[pf.port_class]}"]
    if pf.services:
        for i, s in enumerate(pf.services):
            label = "IANA:" if i == 0 else ""
            rng = f" [range {s.port_text()}]" if s.is_range else ""
            out.append(f"  {label:<12}{s.name} ({'/'.join(s.protos)}){rng}  {s.description}".rstrip())
    else:
        st = ", ".join(f"{p} {v}" for p, v in pf.iana_status.items())
        out.append(f"  {'IANA:':<12}no service ({st})")
    if pf.privileged and pf.privilege_note and pf.os != "linux":
        priv = f"yes: {pf.privilege_note}"    # the platform's own rule (privilege.py)
    elif pf.privileged:
        who = "this process can bind it (CAP_NET_BIND_SERVICE)" if pf.bind_allowed else \
            "this process cannot bind it (needs root or CAP_NET_BIND_SERVICE)"
        priv = f"yes: below ip_unprivileged_port_start={pf.unprivileged_port_start}; {who}"
    elif pf.os != "linux":
        priv = "no: anyone may bind it"
    else:
        priv = f"no: at or above ip_unprivileged_port_start={pf.unprivileged_port_start}; anyone may bind it"
    out.append(f"  {'privileged:':<12}{priv}")
    # describe_port always fills `ephemeral` (None is only PortFacts' default)
    eph = f"{_yes(pf.in_ephemeral_range)} (range {pf.ephemeral}, {pf.ephemeral.size} ports)"  # type: ignore[union-attr]
    if pf.in_ephemeral_range and not pf.reserved:
        from ..remedies import reserve_add_command
        eph += f"; outgoing connections may take it: `{reserve_add_command(pf.port, pf.netns)}`"
    out.append(f"  {'ephemeral:':<12}{eph}")
    out.append(f"  {'reserved:':<12}{_yes(pf.reserved)}" +
               (" (ip_local_reserved_ports: never auto-assigned)" if pf.reserved else ""))
    if pf.in_use:
        for i, r in enumerate(pf.in_use[:TEXT_ROWS]):
            out.append(f"  {'in use:' if i == 0 else '':<12}{_sock(r)}")
        if len(pf.in_use) > TEXT_ROWS:
            states: dict[str, int] = {}
            for r in pf.in_use[TEXT_ROWS:]:
                states[r["state"]] = states.get(r["state"], 0) + 1
            more = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            out.append(f"  {'':<12}... and {len(pf.in_use) - TEXT_ROWS} more ({more}); --json lists them all")
    else:
        out.append(f"  {'in use:':<12}no (no TCP/UDP socket bound to it now)")
    if pf.port == 0:
        out.append(f"  {'note:':<12}{pf.notes[0]}")
    if pf.netns:
        out.append(f"  {'netns:':<12}{pf.netns}")
    if verbose() and pf.in_use_backend:
        out.append(f"  {'backend:':<12}{pf.in_use_backend}")
    return "\n".join(out)


def _summary(found) -> str:
    rows = [f"{'PORT':>5}  {'CLASS':<7}  {'PRIV':<4}  {'EPHEM':<5}  {'RESV':<4}  IN USE"]
    for pf in found:
        use = ", ".join(f"{r['proto']}{'6' if r['family'] == 6 else ''} {r['state']}" for r in pf.in_use) or "-"
        rows.append(f"{pf.port:>5}  {pf.port_class:<7}  {_yes(pf.privileged):<4}  "
                    f"{_yes(pf.in_ephemeral_range):<5}  {_yes(pf.reserved):<4}  {use}")
    return "\n".join(rows)
