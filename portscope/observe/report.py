"""What `report --observe S` adds: the observed window as JSON (`observed`) and as text."""
from __future__ import annotations

from typing import Callable

from .watch import Observation, check_seconds, dest_label, observe


def run(seconds: "str | float", netns: str | None) -> Observation:
    """Watch the reported namespace (`netns`, else this process's) for `seconds`.
    When eBPF does not load, `bpf_note` says why and the counters stand alone."""
    secs = check_seconds(seconds, "--observe")
    return observe(secs, netns, own_netns_only=True)


def headline(obs: Observation) -> str | None:
    """'412 connect() calls failed with EADDRNOTAVAIL in 10 s, 98% from pid 4711 (java) to
    10.0.3.7:5432': the worst observed failure, for the top of the report."""
    for f in obs.findings:
        if f.id == "connect-failures":
            e = f.evidence
            pct = e["process_count"] / e["count"]
            return (f"{e['count']} connect() calls failed with EADDRNOTAVAIL in {obs.seconds:.0f} s, "
                    f"{pct:.0%} from pid {e['pid']} ({e['comm']}) to {e['destination']}")
    return None


def render(obs: Observation, echo: "Callable[[str], None]") -> None:
    """The report's 'Observed' section."""
    c = obs.counters
    echo("")
    echo(f"Observed ({obs.seconds:.1f} s, {'eBPF' if obs.backend == 'bpf' else 'kernel counters only'}):")
    if obs.backend == "bpf":
        if not obs.failures:
            echo("  no connect(), bind() or UDP send failed for want of a port")
        for f in obs.failures[:5]:
            echo(f"  {f.count:>7} {f.syscall}() {f.errno} pid {f.pid} ({f.comm}) netns {f.netns} -> {dest_label(f)}")
        if len(obs.failures) > 5:
            echo(f"  ... and {len(obs.failures) - 5} more (portscope watch)")
    echo(f"  TWRecycled +{c['TWRecycled']}  TCPTimeWaitOverflow +{c['TCPTimeWaitOverflow']}  "
         f"TWKilled +{c['TWKilled']}  TIME_WAIT {c['tw']} of tcp_max_tw_buckets {c['tcp_max_tw_buckets']}")
    for f in obs.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")
