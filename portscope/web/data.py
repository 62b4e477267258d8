"""The web view's JSON document: `pressure --json` plus what the page draws.

One document feeds three things: the exporter's `/api/pressure` endpoint, the page the
exporter serves at `/` (rendered server-side with the same document embedded) and
`portscope report --html`. Keys are documented in docs/json.md ("web").

Hook points for work landing separately (conntrack/SNAT, observed failures, NAT-held
ports): a callable registered in PROVIDERS under one of HOOKS is called at each read and its
result, when not None, is put in the document under that key; the page renders the key when
it is present (docs/web.md, "Hook points").
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

from .. import host
from ..check import status
from ..findings import destination_label
from ..forecast import ClientKeys, client_keys, compacted, forecast
from ..pressure import PressureResult, RowMasks, analyze, row_masks, snapshot_in_range, truncate
from ..sockets.table import SocketTable
from . import hooks
from .render import render_html

if TYPE_CHECKING:
    from ..host import HostFacts

log = logging.getLogger("portscope.web")

HISTORY_POINTS = 360          # at one read per 5 s refresh: the last 30 minutes
MIN_READ_AGE = 1.0            # seconds a document is reused: a tab storm costs one read a second
REFRESH_SECONDS = 5           # how often the live page asks for a new document
# seconds the exporter's last collection may serve the page (half a refresh: a page that
# asks right after a Prometheus scrape rides on it; its numbers are never older than this)
MAX_SAMPLE_AGE = REFRESH_SECONDS / 2
IANA_CLASSES = (("system", 0, 1023), ("user", 1024, 49151), ("dynamic", 49152, 65535))

def history_point(res: PressureResult, t: float) -> dict:
    """One point of the history chart: global use and the worst destination at time t."""
    g, w = res.global_, res.worst
    return {"time": round(t, 3), "in_use": g.in_use, "utilization": round(g.utilization, 6),
            "worst": destination_label(w) if w else None,
            "worst_in_use": w.in_use if w else None,
            "worst_utilization": round(w.utilization, 6) if w else None}


def build_document(res: PressureResult, *, source: str, t: float | None = None, history: Iterable[dict] = (),
                   history_max: int = HISTORY_POINTS, refresh: int | None = None,
                   providers: dict | None = None) -> dict:
    """The web document of one PressureResult. source: 'exporter' (live) or 'report' (a file)."""
    t = time.time() if t is None else t
    doc = res.to_json()
    doc["status"] = status(res)
    doc["time"] = round(t, 3)
    doc["source"] = source
    doc["refresh_seconds"] = refresh
    doc["map"] = {
        "iana_classes": [{"name": n, "low": lo, "high": hi} for n, lo, hi in IANA_CLASSES],
        "reserved_ranges": [{"low": r.low, "high": r.high} for r in res.reserved.ranges],
    }
    points = list(history) or [history_point(res, t)]
    doc["history"] = {"max_points": history_max, "points": points}
    for key, fn in (hooks.PROVIDERS if providers is None else providers).items():
        try:
            value = fn(res.netns, res)
        except Exception as e:            # a hook's failure must not take the page down
            log.warning("web hook %s failed: %s", key, e)
            continue
        if value is None:
            continue
        if key == "nat_ranges":
            doc["map"]["nat_ranges"] = value
        else:
            doc[key] = value
    return doc


def dumps(doc: dict) -> bytes:
    """The endpoint's body: compact JSON (no NaN: the contract test parses strictly)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


class Reading(NamedTuple):
    """One read of a namespace, as the page needs it."""

    at: float                         # monotonic time, middle of the read
    wall: float                       # time.time() of the read (the time the page shows)
    facts: HostFacts
    table: SocketTable | None         # None: no forecast can be made from it
    result: PressureResult            # analyze() of the table, every destination (top=None)
    masks: RowMasks | None = None     # the row masks analyze() used: the forecast step reuses them


# what the web view keeps between reads for the forecast: (time of the read, client keys)
Sample = tuple[float, ClientKeys]


def read_now(netns: str | None) -> Reading:
    """A read of its own (`report --html`, a WebView without an exporter): the sockets of the
    range, analysed once."""
    facts = host.host_facts(netns)
    t0 = time.monotonic()
    table = snapshot_in_range(facts, netns, inodes=False)     # the view never shows inodes
    at = (t0 + time.monotonic()) / 2
    masks = row_masks(facts, table)
    return Reading(at, time.time(), facts, table, analyze(facts, table, top=None, masks=masks), masks)


def step(r: Reading, prev: Sample | None, top: int | None) -> tuple[PressureResult, Sample | None]:
    """The result of one reading and what to keep for the next. With the previous (time,
    client keys) the result carries the forecast of `pressure --interval` over the time
    between the two reads. Each table's client keys are computed once, here, numbering
    address pairs as the previous read's do, and only they are kept (not the table): no
    second pass over either table, no second analyze()."""
    if r.table is None:
        return truncate(r.result, top), None
    cur = client_keys(r.facts, r.table, r.masks, prev[1].pairs if prev is not None else None, r.result)
    if prev is not None and r.at - prev[0] > 0.05:
        res = forecast(r.facts, [(prev[0], None), (r.at, r.table)], top=top, interval=round(r.at - prev[0], 3),
                       base=r.result, keys=[prev[1], cur])
    else:
        res = truncate(r.result, top)
    return res, (r.at, compacted(cur))


def read_pressure(netns: str | None, prev: Sample | None,
                  top: int | None) -> tuple[PressureResult, Sample | None]:
    """One read of its own: (result, what to keep); with the previous one's, the forecast."""
    return step(read_now(netns), prev, top)


class WebView:
    """The exporter's page and endpoint for one namespace: single-flight documents
    (concurrent requests share one), a bounded history, and the previous read's client
    keys for the forecast.

    source(netns) gives the reading (default: a read of its own; the exporter passes the
    sample of its last or in-flight collection); a reading already shown is not shown
    again as new: the document stays, no history point is added. reader (tests, the old
    interface): reader(netns, prev, top) -> (result, what to keep), used instead."""

    def __init__(self, netns: str | None = None, *, top: int | None = 20,
                 history: int = HISTORY_POINTS, min_age: float = MIN_READ_AGE,
                 refresh: int = REFRESH_SECONDS,
                 reader: Callable[..., tuple[PressureResult, Sample | None]] | None = None,
                 clock: Callable[[], float] = time.time,
                 source: Callable[[str | None], Reading] = read_now) -> None:
        self.netns = netns
        self.top = top
        self.min_age = min_age
        self.refresh = refresh
        self.reader = reader
        self.source = source
        self.clock = clock
        self.history: deque = deque(maxlen=max(1, history))
        self._prev: Sample | None = None
        self._doc: dict | None = None
        self._read_at: float | None = None     # Reading.at of the document's read
        self._at = float("-inf")
        self._lock = threading.Lock()

    def document(self) -> dict:
        """The current document: from a new reading, or the last one if younger than min_age
        or if the source has nothing newer."""
        with self._lock:                     # the second of two concurrent requests waits, then reuses
            now = time.monotonic()
            if self._doc is not None and now - self._at < self.min_age:
                return self._doc
            if self.reader is not None:
                res, self._prev = self.reader(self.netns, self._prev, self.top)
                t = self.clock()
            else:
                r = self.source(self.netns)
                if self._doc is not None and r.at == self._read_at:
                    return self._doc
                res, self._prev = step(r, self._prev, self.top)
                self._read_at, t = r.at, r.wall
            self.history.append(history_point(res, t))
            self._doc = build_document(res, source="exporter", t=t, history=self.history,
                                       history_max=self.history.maxlen or HISTORY_POINTS, refresh=self.refresh)
            self._at = time.monotonic()
            return self._doc

    def routes(self) -> dict:
        """path -> callable() -> (status, content type, body), for httpserver.serve()."""
        def guarded(fn, ctype):
            def route():
                try:
                    return 200, ctype, fn()
                except Exception as e:        # e.g. the namespace vanished: say so, keep serving
                    log.warning("web view: read failed: %s", e)
                    return 503, "text/plain; charset=utf-8", f"portscope: cannot read: {e}\n".encode()
            return route

        return {
            "/": guarded(lambda: render_html(self.document(), api="api/pressure").encode(),
                         "text/html; charset=utf-8"),
            "/api/pressure": guarded(lambda: dumps(self.document()), "application/json"),
        }
