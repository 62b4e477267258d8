"""`portscope conns`: sockets with their 4-tuples, ephemeral side and owner.

A thin layer: reading, filtering and counting live in portscope.sockets. Imports
stay light (no rich, no psutil on Linux) because `conns --count` competes with ss.
"""
from __future__ import annotations

import sys

import click

from ..front import views
from .common import Number, json_option, netns_of, netns_option, nonblank, verbose, want_json

PROTOS = ("tcp", "udp", "udplite", "sctp")


def _split(values) -> list[str]:
    out: list[str] = []
    for v in values or ():
        out.extend(x for x in str(v).replace(",", " ").split() if x)
    return out


@click.command("conns")
@click.option("--proto", "protos", multiple=True, metavar="PROTO", callback=nonblank,
              help="tcp, udp, udplite, sctp (repeat or comma-separate; default all).")
@click.option("--state", "states", multiple=True, metavar="STATE", callback=nonblank,
              help="Kernel state name, e.g. ESTABLISHED, TIME_WAIT, LISTEN (repeatable).")
@click.option("--port", metavar="PORT|A-B", help="Only sockets with this port (or range) on either side.")
@click.option("--src", metavar="ADDR[/LEN]", help="Only sockets whose local address is in this network.")
@click.option("--dst", metavar="ADDR[/LEN]", help="Only sockets whose remote address is in this network.")
@click.option("--ephemeral", type=click.Choice(["any", "local", "remote"]), is_flag=False, flag_value="any",
              default=None, help="Only sockets with an ephemeral side (optionally: which side).")
@click.option("--listening", "-l", is_flag=True, help="Only listeners and unconnected UDP (as ss -l).")
@click.option("-4", "v4", is_flag=True, help="IPv4 only.")
@click.option("-6", "v6", is_flag=True, help="IPv6 only (includes v4-mapped).")
@click.option("--process", "-p", is_flag=True, help="Show the owning pid and command (walks /proc; slower).")
@click.option("--sort", "sort_key", type=click.Choice(
    ["proto", "state", "local", "remote", "lport", "rport", "pid", "uid", "inode", "ephemeral"]),
    help="Sort rows (default: kernel order, as ss).")
@click.option("--count", is_flag=True, help="Only count sockets by protocol and state.")
@click.option("--csv", "csv_out", is_flag=True, help="Print rows as CSV.")
@click.option("--limit", type=Number(0, None, whole=True), help="Print at most N rows.")
@click.option("--backend", type=click.Choice(["netlink", "procfs", "psutil"]),
              help="Force a backend (default: netlink, falling back to procfs; psutil off Linux).")
@click.option("--all-netns", is_flag=True, help="Every network namespace on the host; rows labelled by "
              "namespace, container and pod (see `portscope namespaces`).")
@json_option
@netns_option
def conns(protos, states, port, src, dst, ephemeral, listening, v4, v6, process, sort_key, count,
          csv_out, limit, backend, all_netns, json_out, netns) -> None:
    """List sockets with their 4-tuples, which side is ephemeral, and their owner.

    \b
    Examples:
      portscope conns --state ESTABLISHED --ephemeral local
      portscope conns --count
      portscope conns --port 5432 --process
      portscope conns --netns pid:1234 --json
    """
    from ..errors import BadInput
    from ..ports import PortRange
    from ..sockets import filters, snapshot, state_codes

    as_json = want_json(json_out)
    ns = netns_of(netns)
    plist = _split(protos) or list(PROTOS)
    for p in plist:
        if p.lower() not in PROTOS:
            raise BadInput(f"--proto must be one of {', '.join(PROTOS)}, got {p!r}")
    slist = _split(states) or None
    state_codes(slist)                                  # validate before any read
    try:
        prange = PortRange.parse(port) if port is not None else None
    except BadInput as e:
        raise BadInput(f"--port: {e}")
    srcnet = filters.parse_net(src, "--src") if src is not None else None
    dstnet = filters.parse_net(dst, "--dst") if dst is not None else None
    if csv_out and (as_json or count):
        raise BadInput("--csv cannot be combined with --json or --count")
    if count and process:
        raise BadInput("--process cannot be combined with --count (counts are by protocol and state)")
    families = (4,) if v4 and not v6 else (6,) if v6 and not v4 else (4, 6)
    if listening and not slist:
        # ss -l: LISTEN, plus unconnected UDP / UDP-Lite (state CLOSE); asked of the kernel
        slist = ["LISTEN", "CLOSE"]

    if count and prange is None and srcnet is None and dstnet is None and ephemeral is None and not listening:
        # nothing to filter by row: counted while the kernel's replies arrive, no table
        views.conns_count(tuple(p.lower() for p in plist), families, slist, ns, backend, as_json, verbose())
        return

    # the ephemeral decision costs a second kernel dump and a pass; only when shown or filtered
    need_class = not count or ephemeral is not None
    if all_netns:
        from .common import refuse_with_netns
        refuse_with_netns(netns)
        if csv_out or sort_key:
            raise BadInput("--all-netns takes no --csv or --sort")
        def read(spec):
            t = snapshot(tuple(p.lower() for p in plist), families=families, states=slist,
                         owners=process and not count, netns=spec, backend=backend, classify=need_class)
            if process and not count:
                from ..sockets import cgroups
                cgroups.fill(t, spec)
            return t
        return _conns_all(
            read,
            lambda t: filters.select(t, port=prange, src=srcnet, dst=dstnet, ephemeral=ephemeral,
                                     listening=listening),
            as_json, count, process, limit)
    views.conns_rows(tuple(p.lower() for p in plist), families, slist, ns, backend, process, count, as_json,
                     csv_out, sort_key, limit, views.RowFilter(prange, srcnet, dstnet, ephemeral, listening),
                     verbose())


def _conns_all(read, select, as_json: bool, count: bool, process: bool, limit) -> None:
    """`conns --all-netns`: read(spec) -> table in every namespace; select(table) -> rows."""
    import json

    from ..allnetns import each, who
    from ..sockets import filters
    from .common import emit_json
    from .render import warn_skipped

    walk = each(read)
    warn_skipped(walk.skipped)
    warnings = walk.discovery.warnings if walk.discovery else []
    if count:
        per = []
        for v in walk.visits:
            per.append({**v.labels(), "backend": v.value.backend, "warnings": v.value.warnings,
                        **filters.counts(v.value, select(v.value))})
        if as_json:
            emit_json({"all_netns": True, "total": sum(p["total"] for p in per), "namespaces": per,
                       "skipped": walk.skipped, "warnings": warnings})
        else:
            for p in per:
                states = ", ".join(f"{k} {n}" for k, n in sorted(p["by_state"].items()))
                click.echo(f"{who(p)}: {p['total']} socket(s)" + (f" ({states})" if states else ""))
        return
    out = sys.stdout
    left = limit
    picks = []
    for v in walk.visits:
        rows = select(v.value)
        idx = list(rows if rows is not None else range(len(v.value)))
        if left is not None:
            idx, left = idx[:left], left - len(idx[:left])
        picks.append((v, idx))
    if as_json:
        head = {"backend": walk.visits[0].value.backend if walk.visits else None, "netns": None,
                "all_netns": True, "warnings": warnings, "skipped": walk.skipped}
        out.write(json.dumps(head)[:-1] + ', "sockets": [\n')
        out.write(",\n".join(json.dumps({**v.value.row(i), **v.labels()}) for v, idx in picks for i in idx))
        out.write("\n]}\n")
        return
    for v, idx in picks:
        out.write(f"# {who(v.labels())} (inode {v.ns.inode}, backend {v.value.backend})\n")
        views.print_table(v.value, idx, process)
