"""What `report --observe S` adds: the observed window as JSON (`observed`) and as text."""
from __future__ import annotations

from .watch import Observation, check_seconds, observe


def run(seconds: "str | float", netns: str | None) -> Observation:
    """Watch the reported namespace (`netns`, else this process's) for `seconds`.
    When eBPF does not load, `bpf_note` says why and the counters stand alone (the CLI
    prints that note as one line on stderr)."""
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
