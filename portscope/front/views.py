"""What `range`, `port N`, `namespaces`, `pressure` and `conns` print, without click.

The click commands (portscope.cli) and the fast front end (front.fast) call these same
functions, so both paths print the same bytes. Nothing heavy at module level (no click,
typing or dataclasses): the fast front end imports this module on every start-up, and each
function imports the library it needs when it runs.
"""
from __future__ import annotations

import sys

# typing's own TYPE_CHECKING would import typing (as long as all of this module's start-up);
# mypy honours any name TYPE_CHECKING
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence

    from ..host import HostFacts
    from ..portinfo import PortFacts
    from ..pressure import PressureResult
    from ..sockets.table import SocketTable

    Echo = Callable[[str], object]

TW_REUSE = {0: "off", 1: "on", 2: "loopback only"}
TEXT_ROWS = 20   # a busy server port can hold thousands of connections: the text shows the first ones
CLASS_TEXT = {"system": "system (well known, 0-1023)", "user": "user (registered, 1024-49151)",
              "dynamic": "dynamic (private/ephemeral, 49152-65535)"}
COUNT_KEYS = ("total", "by_proto", "by_state", "by_proto_state")


def echo(message: str = "", err: bool = False) -> None:
    """Print one line as click.echo does: the text, a newline, a flush; ANSI escapes left
    out when the stream is not a terminal (a process name can carry them)."""
    out = sys.stderr if err else sys.stdout
    text = f"{message}\n"
    if "\x1b" in text and not out.isatty():
        import re
        text = re.sub(r"\033\[[;?0-9]*[a-zA-Z]", "", text)     # click's own pattern
    out.write(text)
    out.flush()


def emit_json(obj: object) -> None:
    """Print `obj` as indented JSON on stdout (anything not JSON-native as its str()): the
    bytes of json.dump(obj, indent=2, default=str), without importing json (front.jsonout)."""
    from .jsonout import dumps
    sys.stdout.write(dumps(obj) + "\n")


# ---------------------------------------------------------------- range

def show_range(facts: HostFacts, verbose: bool = False) -> None:
    """`portscope range`'s text: the range, reserved ports, the privileged boundary, TIME_WAIT."""
    d = facts.to_json()
    e = facts.ephemeral
    tag = "this OS's default" if d["is_os_default"] else f"default is {facts.os_default}"
    where = f" in netns {facts.netns}" if facts.netns else ""
    echo(f"Ephemeral range{where}: {e.low}-{e.high} ({e.size:,} ports; {tag})")
    echo(f"  {d['comparison']}")
    for r in facts.ranges:
        if len(facts.ranges) > 1 or r.range != e:
            echo(f"  {r.name:<9} {r.range.low}-{r.range.high} ({r.range.size:,} ports)")
    if facts.os == "linux" and e.same_parity:
        echo("  note: LOW and HIGH have the same parity; the kernel prefers different parity")
    if facts.reserved:
        echo(f"Reserved ports: {facts.reserved} ({len(facts.reserved):,} port{'s' if len(facts.reserved) != 1 else ''}, "
             f"{d['reserved_in_range']:,} inside the range; {d['usable_ephemeral']:,} usable)")
    else:
        echo("Reserved ports: none")
    for s in facts.reserved_sets:
        echo(f"  excluded {s.name:<9} {s.ports or 'none'}")
    u = facts.unprivileged_port_start
    if facts.os == "windows" or u == 0:
        echo("Privileged ports: none (any user may bind any port)")
    elif facts.os == "linux":
        echo(f"Privileged ports: below {u} (binding needs root or CAP_NET_BIND_SERVICE)")
    elif facts.wildcard_bind_unprivileged:
        echo(f"Privileged ports: {facts.privileged_low}-{u - 1} on a specific address (binding needs root); "
             "any user may bind them on the wildcard address (macOS 10.14+)")
    else:
        echo(f"Privileged ports: {facts.privileged_low}-{u - 1} (binding needs root)")
    if facts.tcp_tw_reuse is not None:
        delay = f", reuse after {facts.tcp_tw_reuse_delay_ms} ms" if facts.tcp_tw_reuse_delay_ms is not None else ""
        echo(f"TIME_WAIT: {facts.time_wait_seconds} s (fixed); tcp_tw_reuse={facts.tcp_tw_reuse} "
             f"({TW_REUSE.get(facts.tcp_tw_reuse, '?')}){delay}")
    elif facts.os != "linux":
        echo(f"TIME_WAIT: {facts.time_wait_seconds} s ({facts.time_wait_source})")
    if verbose:
        for k, v in facts.sources.items():
            echo(f"  source {k}: {v}")


def range_show(netns: str | None, as_json: bool, verbose: bool = False) -> None:
    """`portscope range [--json]`: read the host's facts and print them."""
    from ..host import host_facts

    f = host_facts(netns)
    if as_json:
        emit_json(f.to_json())
    else:
        show_range(f, verbose)


# ---------------------------------------------------------------- port N

def yes_no(b: bool) -> str:
    """"yes" or "no", as the port tables print a flag."""
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
    if r["proto"] == "tcp" and r["state"] == "CLOSE":
        s += "  (bound: not listening or connected)"
    return s


def render_port(pf: PortFacts, verbose: bool = False) -> str:
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
    eph = f"{yes_no(pf.in_ephemeral_range)} (range {pf.ephemeral}, {pf.ephemeral.size} ports)"  # type: ignore[union-attr]
    if pf.in_ephemeral_range and not pf.reserved:
        from ..remedies import reserve_add_command
        eph += f"; outgoing connections may take it: `{reserve_add_command(pf.port, pf.netns)}`"
    out.append(f"  {'ephemeral:':<12}{eph}")
    out.append(f"  {'reserved:':<12}{yes_no(pf.reserved)}" +
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
    if verbose and pf.in_use_backend:
        out.append(f"  {'backend:':<12}{pf.in_use_backend}")
    return "\n".join(out)


def port_number(target: str, proto: str | None, ns: str | None, owners: bool, as_json: bool,
                verbose: bool = False) -> None:
    """`portscope port N`: describe one port number (`target`, still text: parse_port checks it)."""
    from .. import portinfo
    from ..natprobe import may_hold_ports
    from ..ports import parse_port

    pf = portinfo.describe_port(parse_port(target), proto, ns, owners=owners)
    nat: list[dict] = []
    if may_hold_ports(ns):      # else no NAT rule exists to read: neither the nat package nor its processes
        from ..nat import holders_of
        nat = holders_of(pf.port, ns, proto)       # NAT rules hold ports no socket shows
    if as_json:
        d = pf.to_json()
        if nat:
            d["nat_holders"] = nat
        emit_json(d)
    else:
        echo(render_port(pf, verbose) + "".join(f"\n  {'nat:' if i == 0 else '':<12}held by {h['text']}"
                                                for i, h in enumerate(nat)))


# ---------------------------------------------------------------- namespaces

def namespaces_show(as_json: bool) -> None:
    """`portscope namespaces [--json]`: every network namespace, with its container and pod."""
    from ..errors import Unsupported
    if not sys.platform.startswith("linux"):
        raise Unsupported("network namespaces are a Linux feature")
    from ..namespaces import discover

    d = discover()
    if as_json:
        emit_json(d.to_json())
        return
    for w in d.warnings:
        echo(f"portscope: warning: {w}", err=True)
    rows = [("INODE", "NAMES", "PROCS", "PROCESSES", "CONTAINER", "POD")]
    for ns in d.namespaces:
        j = ns.to_json()
        procs = " ".join(f"{p}/{c}" for p, c in zip(j["pids"][:3], j["commands"][:3]))
        if ns.pids and len(ns.pids) > 3:
            procs += " ..."
        cont = f"{ns.container.runtime}:{ns.container.id[:12]}" if ns.container else "-"
        pod = f"{ns.pod.uid} ({ns.pod.qos})" if ns.pod else "-"
        names = ",".join(ns.names) or "-"
        rows.append((str(ns.inode) + ("*" if ns.current else ""), names, str(len(ns.pids)),
                     procs or "-", cont, pod))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    echo(f"({len(d.namespaces)} namespaces; * = ours"
         + (f"; {d.unreadable} process(es) unreadable" if d.unreadable else "") + ")")


# ---------------------------------------------------------------- pressure

def render_destinations(res: PressureResult, echo: Echo = echo) -> None:
    """The destinations table (with rate, sustainable rate and ETA columns after a forecast)."""
    from ..findings import percent
    fc = res.forecast is not None
    if not res.destinations:
        echo("  (no outgoing connections using the ephemeral range)")
        return
    rows = [("PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")
            + (("RATE/s", "MAX/s", "EXHAUSTED IN") if fc else ())]
    for d in res.destinations:
        row: tuple[str, ...] = (d.proto, d.label, str(d.in_use), str(d.time_wait), str(d.capacity), percent(d.utilization))
        if fc:
            eta = "-" if d.seconds_to_exhaustion is None else f"{d.seconds_to_exhaustion:.0f} s"
            mx = "-" if d.sustainable_rate_per_s is None else f"{d.sustainable_rate_per_s:.1f}"
            row += (f"{d.rate_per_s:.1f}", mx, eta)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        echo("  " + "  ".join(cells).rstrip())
    if res.others["destinations"]:
        echo(f"  ... and {res.others['destinations']} more destination(s) holding {res.others['in_use']} port(s)")


def render_global(res: PressureResult, echo: Echo = echo) -> None:
    """One line: global use of the pool and what holds it."""
    from ..findings import percent
    g = res.global_
    echo(f"Global: {g.in_use} of {g.capacity} usable ports in use ({percent(g.utilization)}): "
         f"{g.listeners} listener, {g.bind_held} bind-held, {g.udp} UDP, "
         f"{g.connect} connect() sockets ({g.time_wait} in TIME_WAIT)")


def render_findings(res: PressureResult, echo: Echo = echo) -> None:
    """Each finding with its severity, message and fix."""
    if not res.findings:
        echo("  none: nothing to fix")
        return
    for f in res.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")


def pressure_show(netns: str | None, top: int | None, interval: float | None, samples: int | None,
                  process: bool, as_json: bool, verbose: bool = False, cgroup: bool = False) -> None:
    """`portscope pressure` without --check: measure and print destinations, forecast, findings
    (with `cgroup`, each destination's sockets by cgroup, read from the same table)."""
    from ..datapath import measure

    by_dest: dict = {}
    if cgroup:
        from ..destcgroups import measure_cgroups
        res, by_dest = measure_cgroups(netns, top=top, process=process, interval=interval, samples=samples)
    else:
        res = measure(netns, top=top, process=process, interval=interval, samples=samples)
    none = {"top": [], "more": 0, "time_wait": 0, "unknown": 0}
    if as_json:
        doc = res.to_json()
        if cgroup:
            for d in doc["destinations"]:
                d["cgroups"] = by_dest.get((d["proto"], d["src"], d["dst"], d["dport"]), none)
        emit_json(doc)
        return
    r = res.range
    echo(f"Range {r.low}-{r.high} ({r.size} ports, {res.global_.reserved_in_range} reserved inside)"
         + (f", netns {res.netns}" if res.netns else "")
         + (f", backend {res.backend}" if verbose else ""))
    render_global(res)
    if res.forecast:
        f = res.forecast
        echo(f"Forecast: {f['samples']} samples over {f['elapsed_s']:.1f} s, "
             f"{f['new_connections']} new connections ({f['rate_per_s']:.1f}/s); "
             f"TIME_WAIT {f['time_wait_seconds']} s, tcp_tw_reuse {f['tcp_tw_reuse']}")
    echo(f"Destinations ({res.destinations_total}):")
    render_destinations(res)
    if cgroup:
        _cgroup_lines(res, by_dest, none)
    if res.processes:
        echo("Processes (client sockets, distinct usable ports they hold):")
        for p in res.processes[:10]:
            echo(f"  {p.in_use:>7} sockets {p.ports:>6} ports  pid {p.pid if p.pid is not None else '?'}"
                 f"  {p.command or ''}")
    echo("Findings:")
    render_findings(res)


def _cgroup_lines(res: Any, by_dest: dict, none: dict) -> None:
    from ..destcgroups import label
    echo("Cgroups per destination (sockets):")
    for d in res.destinations:
        c = by_dest.get(d.key, none)
        parts = [f"{label(e)} {e['sockets']}" for e in c["top"]]
        if c["more"]:
            parts.append(f"other cgroups {c['more']}")
        if c["time_wait"]:
            parts.append(f"no cgroup (TIME_WAIT) {c['time_wait']}")
        if c["unknown"]:
            parts.append(f"no cgroup (request socket or closed since) {c['unknown']}")
        echo(f"  {d.proto} {d.label}: " + (", ".join(parts) or "none"))


# ---------------------------------------------------------------- conns

def conns_count(protos: tuple, families: tuple, states: list | None, ns: str | None, backend: str | None,
                as_json: bool, verbose: bool = False) -> None:
    """`conns --count` with nothing to filter by row: counted while the kernel's replies arrive, no table."""
    from ..sockets import count as count_sockets
    c = count_sockets(protos, families=families, states=states, netns=ns, backend=backend)
    report_read(c["backend"], c["warnings"], c["notes"], ns, verbose)
    print_count_result(c["backend"], ns, c["warnings"], {k: c[k] for k in COUNT_KEYS}, as_json)


def conns_rows(protos: tuple, families: tuple, states: list | None, ns: str | None, backend: str | None,
               process: bool, count: bool, as_json: bool, csv_out: bool, sort_key: str | None,
               limit: int | None, select: RowFilter, verbose: bool = False) -> None:
    """`conns` in one namespace: read the table, keep the rows select(table) picks (None: all),
    then count them or print them as JSON, CSV or aligned text."""
    from ..sockets import filters, snapshot

    # the ephemeral decision costs a second kernel dump and a pass; only when shown or filtered
    table = snapshot(protos, families=families, states=states, owners=process and not count,
                     netns=ns, backend=backend, classify=not count or select.needs_class)
    if process and not count:
        from ..sockets import cgroups
        cgroups.fill(table, ns)          # which container / pod opened each socket
    report_read(table.backend, table.warnings, table.notes, ns, verbose)

    rows = select(table)
    if count:
        print_count_result(table.backend, ns, table.warnings, filters.counts(table, rows), as_json)
        return

    idx = rows if rows is not None else range(len(table))
    if sort_key:
        idx = filters.sort_rows(table, list(idx), sort_key)
    if limit is not None:
        idx = list(idx)[:limit]
    if as_json:
        print_json(table, idx, ns)
    elif csv_out:
        print_csv(table, idx, process)
    else:
        print_table(table, idx, process)


class RowFilter:
    """The row filters of `conns` (port range, networks, ephemeral side, listening), as one
    callable: table -> selected row indexes, or None for every row."""

    def __init__(self, port: Any = None, src: Any = None, dst: Any = None, ephemeral: str | None = None, listening: bool = False) -> None:
        self.port, self.src, self.dst, self.ephemeral, self.listening = port, src, dst, ephemeral, listening
        self.needs_class = ephemeral is not None        # filtering by the ephemeral side needs it decided

    def __call__(self, table: SocketTable) -> Any:
        """The selected rows of `table` (None: all of them)."""
        from ..sockets import filters
        return filters.select(table, port=self.port, src=self.src, dst=self.dst, ephemeral=self.ephemeral,
                              listening=self.listening)


def write_chunks(chunks: Iterable[str]) -> None:
    """Write each text chunk to stdout as it comes."""
    write = sys.stdout.write
    for chunk in chunks:
        write(chunk)


def print_json(table: SocketTable, idx: Sequence[int] | range, ns: str | None) -> None:
    """One socket per line, streamed in batches (sockets.rowtext: the bytes of json.dumps per row)."""
    from ..sockets.rowtext import json_document
    head = {"backend": table.backend, "netns": ns, "warnings": table.warnings}
    write_chunks(json_document(table, idx, head))


def report_read(backend: str, warnings: list, notes: list, ns: str | None, verbose: bool = False) -> None:
    """The read's warnings on stderr; with -v, the backend and its notes too."""
    for w in warnings:
        echo(f"portscope: warning: {w}", err=True)
    if verbose:
        echo(f"portscope: backend {backend}" + (f" (netns {ns})" if ns else ""), err=True)
        for n in notes:
            echo(f"portscope: {n}", err=True)


def print_count_result(backend: str, ns: str | None, warnings: list, c: dict, as_json: bool) -> None:
    """`conns --count`'s answer: JSON, or the PROTO / STATE / COUNT table."""
    if as_json:
        emit_json({"backend": backend, "netns": ns, "warnings": warnings, **c})
    else:
        print_counts(backend, c)


def print_counts(backend: str, c: dict) -> None:
    """The PROTO / STATE / COUNT table and the total."""
    out = sys.stdout.write
    out(f"{'PROTO':<8} {'STATE':<12} {'COUNT':>8}\n")
    for proto, states in c["by_proto_state"].items():
        for state, n in sorted(states.items(), key=lambda kv: -kv[1]):
            out(f"{proto:<8} {state:<12} {n:>8}\n")
    out(f"{'total':<21} {c['total']:>8}   (backend: {backend})\n")


def print_csv(table: SocketTable, idx: Sequence[int] | range, process: bool) -> None:
    """Rows as CSV (with pid and command when --process)."""
    if not process:
        from ..sockets.rowtext import csv_rows
        write_chunks(csv_rows(table, idx))
        return
    import csv
    keys = ["proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
            "ephemeral", "ephemeral_method", "uid", "inode"] + (["pid", "command"] if process else [])
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(keys)
    for i in idx:
        r = table.row(i)
        w.writerow(["" if r.get(k) is None else r.get(k) for k in keys])


def print_table(table: SocketTable, idx: Sequence[int] | range, process: bool) -> None:
    """Aligned columns, streamed in batches (sockets.rowtext: widths first, then rows)."""
    from ..sockets.rowtext import text_rows
    write_chunks(text_rows(table, idx, process))


def quiet_stdout() -> None:
    """After a broken pipe (`portscope conns | head`): point stdout at /dev/null so the
    interpreter's final flush does not fail again and the exit stays quiet (0)."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
