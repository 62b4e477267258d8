"""Pieces every command shares: --json/--netns options and output."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import click

from ..errors import BadInput
from ..front.views import emit_json as emit_json  # every command's JSON; shared with the fast front end
from ..netns import check_spec
from ..numparse import INTERVAL_S, parse_real, parse_whole

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):
    """Every numeric option: ASCII digits, finite, in range, else one `portscope: error:`
    line and exit 2 (BadInput), naming the option. One type, so `--seed -1` or `--interval
    1e308` get the same answer from every command."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, whole: bool = False,
                 lo_open: bool = False, unit: str = "") -> None:
        self.lo, self.hi, self.whole, self.lo_open, self.unit = lo, hi, whole, lo_open, unit
        self.name = "integer" if whole else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The checked number (int for whole options), or BadInput naming the option."""
        what = param.opts[0] if param is not None and getattr(param, "opts", None) else "value"
        try:
            if self.whole:
                return parse_whole(value, what, None if self.lo is None else int(self.lo),
                                   None if self.hi is None else int(self.hi))
            return parse_real(value, what, self.lo, self.hi, lo_open=self.lo_open, unit=self.unit)
        except BadInput as e:
            if ctx is None:         # called outside click: the library's error
                raise
            # a usage error: exit 2 with the `--help` pointer, UNKNOWN under pressure --check
            raise click.UsageError(str(e), ctx) from None


# limits shared by every command that has the option
INTERVAL = Number(*INTERVAL_S, unit="seconds")    # pressure, top, exporter: sampling/refresh/write
SEED = Number(0, 2**63 - 1, whole=True)           # suggest, simulate (quiz parses its own, same rule)
TOP = Number(0, 1_000_000, whole=True)


def json_option(f: F) -> F:
    """Decorator: the command's --json flag (passed as `json_out`)."""
    return click.option("--json", "json_out", is_flag=True, help="Print JSON (keys documented in docs/json.md).")(f)


def check_netns(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback for every --netns (single or repeated): a blank value is bad input,
    never "this host"."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(check_spec(v) for v in value)
    return check_spec(value)


def nonblank(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: an option given with an empty or blank value is bad input, never
    "not given" (`--web-config "$CFG"` with CFG unset must not serve without auth)."""
    if value is None:
        return None
    for v in value if isinstance(value, tuple) else (value,):     # repeated options too
        if not str(v).replace(",", " ").strip():
            raise BadInput(f"{param.opts[0]} needs a value, got {v!r} (leave the option out instead)")
    return value


def netns_option(f: F) -> F:
    """Decorator: the command's --netns option (passed as `netns`)."""
    return click.option("--netns", metavar="NAME|pid:PID", callback=check_netns,
                        help="Network namespace: a name from `ip netns list` or pid:PID.")(f)


def want_json(json_out: bool | None) -> bool:
    """JSON output: asked on the command or before it (`portscope --json CMD`)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(json_out or (root or {}).get("json"))


def netns_of(netns: str | None) -> str | None:
    """The namespace given on the command or before it; BadInput if both name different ones."""
    ctx = click.get_current_context(silent=True)
    root = (ctx.find_root().obj if ctx else None) or {}
    outer = root.get("netns")
    if netns and outer and netns != outer:
        from ..errors import BadInput
        raise BadInput(f"two namespaces given: --netns {outer} before the command and --netns {netns} after it")
    return netns or outer


def verbose() -> bool:
    """True when -v/--verbose was given anywhere on the command line."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool((root or {}).get("verbose"))


# ---- node egress against a NAT budget (pressure --egress; exporter --cloud / --nat-budget) ----

CLOUDS = ("aws-nat-gateway", "azure-nat-gateway", "azure-lb", "gcp-cloud-nat")
NAT_BUDGET = Number(1, 10**9, whole=True)
NAT_ADDRESSES = Number(1, 64, whole=True)           # the providers' maxima are checked by egress.budget()
NAT_HOLD = Number(0, 86400, unit="seconds")
_EGRESS_OPTIONS = [
    click.option("--egress", is_flag=True,
                 help="Node egress: flows per (proto, destination IP, port) across every namespace and "
                      "source address, against a NAT's per-destination budget (docs/egress.md)."),
    click.option("--nat-budget", type=NAT_BUDGET, default=None, metavar="N",
                 help="With --egress: flows one NAT address allows to one destination (or per VM for "
                      "azure-lb / gcp-cloud-nat); overrides the --cloud preset's number."),
    click.option("--cloud", type=click.Choice(CLOUDS), default=None,
                 help="With --egress: a provider's documented budget and hold time."),
    click.option("--nat-addresses", type=NAT_ADDRESSES, default=None, metavar="K",
                 help="With --egress: NAT public addresses (multiplies a per-address budget; default 1)."),
    click.option("--nat-hold", type=NAT_HOLD, default=None, metavar="S",
                 help="With --egress: seconds a NAT keeps a closed TCP flow's port (default: the preset's "
                      "documented value, else 60, the node's own TIME_WAIT)."),
    click.option("--include-private", is_flag=True,
                 help="With --egress: count private (RFC 1918, ULA, 100.64/10) destinations too "
                      "(they usually stay inside the VPC, off the NAT)."),
]


def egress_options(run_egress: Callable[[dict, dict], None]) -> Callable:
    """Add the --egress options to a command; with --egress, call run_egress(egress options
    dict, the command's own keyword arguments) instead of the command."""
    def decorate(f):
        import functools

        @functools.wraps(f)
        def wrapper(*args, egress, nat_budget, cloud, nat_addresses, nat_hold, include_private, **kw):
            from ..errors import BadInput
            opts = {"nat_budget": nat_budget, "cloud": cloud, "nat_addresses": nat_addresses,
                    "nat_hold": nat_hold, "include_private": include_private}
            if egress:
                return run_egress(opts, kw)
            given = [f"--{k.replace('_', '-')}" for k, v in opts.items() if v]
            if given:
                raise BadInput(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --egress")
            return f(*args, **kw)
        for opt in reversed(_EGRESS_OPTIONS):
            wrapper = opt(wrapper)
        return wrapper
    return decorate


_EXPORTER_EGRESS_OPTIONS = [
    click.option("--cloud", type=click.Choice(CLOUDS), default=None,
                 help="Also export node egress per destination against this provider's NAT budget "
                      "(portscope_egress_destination_flows / _budget_ratio; docs/egress.md)."),
    click.option("--nat-budget", type=NAT_BUDGET, default=None, metavar="N",
                 help="Also export node egress against this per-destination NAT budget (or override the "
                      "--cloud preset's number)."),
    click.option("--nat-addresses", type=NAT_ADDRESSES, default=None, metavar="K",
                 help="With --cloud / --nat-budget: NAT public addresses (default 1)."),
    click.option("--nat-hold", type=NAT_HOLD, default=None, metavar="S",
                 help="With --cloud / --nat-budget: seconds a NAT keeps a closed TCP flow's port."),
]


def exporter_egress_options(f: Callable) -> Callable:
    """Add the NAT budget options to `exporter`; the budget is then egress_budget()."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, cloud, nat_budget, nat_addresses, nat_hold, **kw):
        from ..egress import budget
        from ..errors import BadInput
        b = None
        if cloud or nat_budget is not None:
            b = budget(nat_budget, cloud, nat_addresses, nat_hold)
        elif nat_addresses is not None or nat_hold is not None:
            raise BadInput("--nat-addresses and --nat-hold need --cloud or --nat-budget")
        click.get_current_context().ensure_object(dict)["egress_budget"] = b
        return f(*args, **kw)
    for opt in reversed(_EXPORTER_EGRESS_OPTIONS):
        wrapper = opt(wrapper)
    return wrapper


def egress_budget() -> Any:
    """The exporter's NAT budget (None: no egress series)."""
    ctx = click.get_current_context(silent=True)
    return (ctx.obj or {}).get("egress_budget") if ctx else None


def refuse_with_netns(netns: str | None) -> None:
    """--all-netns reads every namespace: a --netns beside it is a contradiction."""
    if netns_of(netns):
        from ..errors import BadInput
        raise BadInput("--all-netns cannot be combined with --netns: it already reads every namespace")
