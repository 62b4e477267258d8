"""Hook points of the web document for work that lands separately (conntrack/SNAT, observed
failures, NAT-held ports): a callable registered under one of HOOKS is called at each read
and its result, when not None, is put in the document under that key; the page renders the
key when it is present (docs/web.md, "Hook points")."""
from __future__ import annotations

from typing import Callable

# document key -> its meaning; a provider's value is rendered as a panel (conntrack,
# failures: {"title", "summary", "items": [{"label", "value", "ratio"}]}) or, for
# nat_ranges, as [{"low", "high"}] drawn on the port map
HOOKS = {
    "conntrack": "conntrack fill and SNAT destinations (panel)",
    "failures": "what the kernel refused: observed connect()/bind() failures (panel)",
    "nat_ranges": "ports held by NAT, drawn on the port map ([{low, high}])",
}
# hook key -> callable(netns: str | None, result: PressureResult) -> value | None
PROVIDERS: dict[str, Callable] = {}


def register(key: str, provider: Callable) -> None:
    """Let another module fill one of the HOOKS keys at every read."""
    if key not in HOOKS:
        raise ValueError(f"unknown web hook {key!r} (known: {', '.join(HOOKS)})")
    PROVIDERS[key] = provider
