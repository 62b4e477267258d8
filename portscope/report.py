"""The host report as a document: range facts, the headline (worst destination, global
use, status), findings with remedies and the top destinations. `portscope report --json`
prints it; the text report and the web page render it.
"""
from __future__ import annotations

from .check import status
from .pressure import PressureResult

__all__ = ["report_json"]


def report_json(res: PressureResult) -> dict:
    """Range facts, headline, findings and top destinations (plus everything pressure has)."""
    g = res.global_
    w = res.worst
    return {
        "os": res.os,
        "netns": res.netns,
        "backend": res.backend,
        "range": {**res.range.to_json(), "same_parity": res.range.same_parity},
        "reserved": str(res.reserved),
        "reserved_in_range": g.reserved_in_range,
        "unprivileged_port_start": res.unprivileged_port_start,
        "tcp_tw_reuse": res.tcp_tw_reuse,
        "time_wait_seconds": res.time_wait_seconds,
        "headline": {
            "worst_destination": w.to_json() if w else None,
            "global": g.to_json(),
            "status": status(res),
        },
        "findings": [f.to_json() for f in res.findings],
        "destinations": [d.to_json() for d in res.destinations],
        "destinations_total": res.destinations_total,
        "global": g.to_json(),
    }
