"""The OS-neutral engine of a change: plan (every check, nothing touched), apply step by
step with a read-back after each, and on any failure undo what was done (and the file
written) so the system ends exactly as it started.

Linux writes /proc/sys directly (the same effect as the printed `sysctl -w`, and it works
inside a namespace entered with setns). macOS/FreeBSD and Windows run their native
commands through an injectable runner, so tests can feed a fake one that behaves like the
real OS. Each backend module plans its own steps and brings its own Executor; this module
only orders, checks and undoes them.
"""
from __future__ import annotations

import shlex
from contextlib import nullcontext
from typing import Callable, Sequence

from .. import netns as _netns
from ..errors import BadInput, PortscopeError, SystemReadError, Unsupported
from ..fsutil import atomic_write
from ..ports import MIN_USABLE_RANGE
from . import bsd, linux, sysctld, windows
from ._common import (
    FileWrite,
    HostFacts,
    Plan,
    Result,
    Runner,
    SocketFacts,
    Step,
    Sysctl,
    check_range,
    parse_ports,
    run_command,
)

# macOS/FreeBSD clamp first/last to >= IPPORT_RESERVED whatever the privileged boundary says
_MIN_FIRST = {"darwin": bsd.IPPORT_RESERVED, "freebsd": bsd.IPPORT_RESERVED}


def plan_range(low: int | str, high: int | str, *, facts: HostFacts, sockets: SocketFacts | None = None, force: bool = False,
               persist: bool = False, sysctl_dir: str | None = None, reserve_listeners: bool = False,
               protos: Sequence[str] | None = None) -> Plan:
    """Check everything about `range set LOW HIGH` and say exactly what would be done.

    `sockets` (listeners and ports in use, read by the caller) lets Linux refuse a range
    that cannot hold today's connections and warn about listeners it would expose."""
    new = check_range(low, high)
    osname = facts.os
    floor = max(facts.unprivileged_port_start, _MIN_FIRST.get(osname, 0))
    if new.low < floor:
        what = "ip_unprivileged_port_start" if osname == "linux" else "the privileged-port boundary"
        raise BadInput(f"LOW {new.low} is below {what} ({floor}): ephemeral ports must be unprivileged")
    if osname == "windows":
        windows.check_settable(new)
    elif osname not in ("linux", "darwin", "freebsd"):
        raise Unsupported(f"changing the range is not supported on {osname}")
    if osname != "windows" and protos:
        raise BadInput(f"--proto applies to Windows only: {osname} has one range for every protocol")
    warnings: list[str] = []
    notes: list[str] = []
    serving = new.size - facts.reserved.count_in(new) if osname == "linux" else new.size
    if serving < MIN_USABLE_RANGE:
        why = (f"the range {new} leaves {serving} usable port{'s' if serving != 1 else ''}"
               + (f" ({facts.reserved.count_in(new)} of its {new.size} reserved)" if serving != new.size else "")
               + ": each destination could hold one connection at a time and the next connect() "
               f"would fail (EADDRNOTAVAIL); a range needs at least {MIN_USABLE_RANGE} usable ports, "
               "as `lab exhaust` does")
        if not force:
            raise BadInput(f"{why} (use --force to do it anyway)")
        warnings.append(f"--force: {why}")
    if osname == "linux":
        steps, settings, more_warnings, notes = linux.plan_range(new, facts, sockets, reserve_listeners=reserve_listeners,
                                                                 force=force)
        warnings.extend(more_warnings)
    elif osname == "windows":
        steps, settings = windows.plan_range(new, facts, protos), {}
    else:
        steps, settings = bsd.plan_range(new, facts)
    if not steps:
        notes.append(f"the range is already {new} ({new.size:,} ports); nothing to change")
    fw = None
    if persist:
        fw, more = sysctld.persist_plan(osname, facts.netns, settings, sysctl_dir)
        warnings.extend(more)
    return Plan(osname, "range set", facts.netns, facts, tuple(steps), fw, tuple(warnings), tuple(notes))


def plan_reserve(op: str, ports_text: str, *, facts: HostFacts, persist: bool = False,
                 sysctl_dir: str | None = None, protos: Sequence[str] | None = None) -> Plan:
    """`reserve add|remove PORTS`: the new list is computed from the current one, never replaced blindly."""
    if op not in ("add", "remove"):
        raise BadInput(f"unknown reserve operation {op!r}")
    ports = parse_ports(ports_text)
    if facts.os == "windows":
        if persist:
            raise Unsupported("--persist is not needed on windows: netsh exclusions are persistent")
        steps, warnings, notes = windows.plan_reserve(op, ports, facts, protos)
        return Plan("windows", f"reserve {op}", None, facts, tuple(steps), None, tuple(warnings), tuple(notes))
    if protos:
        raise BadInput("--proto applies to Windows only: the Linux reserved list covers every protocol")
    if facts.os != "linux":
        raise Unsupported(f"a reserved-ports list exists on Linux and Windows (exclusions) only, not on {facts.os}")
    steps, settings, warnings, notes = linux.plan_reserve(op, ports, facts)
    fw = None
    if persist:
        fw, more = sysctld.persist_plan("linux", facts.netns, settings, sysctl_dir)
        warnings.extend(more)
    return Plan("linux", f"reserve {op}", facts.netns, facts, tuple(steps), fw, tuple(warnings), tuple(notes))


def executor(plan: Plan, *, sysctl: Sysctl | None = None,
             runner: Runner | None = None) -> linux.Executor | bsd.Executor:
    """The backend's Executor for this plan's OS."""
    if plan.os == "linux":
        return linux.Executor(sysctl)
    runner = runner or run_command
    return windows.Executor(runner) if plan.os == "windows" else bsd.Executor(runner)


def apply(plan: Plan, *, sysctl: Sysctl | None = None, runner: Runner | None = None,
          write_file: Callable[[str, str], None] = atomic_write) -> Result:
    """Do the plan; on any failure undo what was done and re-raise (one line)."""
    ex = executor(plan, sysctl=sysctl, runner=runner)
    ctx = _netns.entered(plan.netns) if plan.os == "linux" else nullcontext()
    done: list[Step] = []
    wrote_file = False
    read_back: dict[str, str] = {}
    with ctx:
        try:
            for step in plan.steps:
                now = ex.read(step)
                if now != step.old:
                    raise SystemReadError(f"{step.key} changed since it was read ({step.old!r} -> {now!r}); "
                                          f"run the command again")
                ex.do(step)
                done.append(step)
                got = ex.read(step)
                read_back[step.key] = got
                if got != step.new:
                    raise SystemReadError(f"read back {step.key}: expected {step.new!r}, got {got!r}")
            if plan.persist is not None and plan.persist.old != plan.persist.new:
                write_file(plan.persist.path, plan.persist.new)
                wrote_file = True
            after = ex.reread(plan)
        except BaseException as e:
            problems = _rollback(ex, done, plan.persist if wrote_file else None)
            if isinstance(e, (KeyboardInterrupt, SystemExit)) and not problems:
                raise
            reason = str(e) if isinstance(e, PortscopeError) else f"{type(e).__name__}: {e}"
            if problems:
                raise SystemReadError(f"{reason}; ROLLBACK FAILED, fix by hand: {'; '.join(problems)}") from e
            undone = f"rolled back {len(done)} change(s), settings are as before" if done or wrote_file \
                else "nothing was changed"
            err = type(e)(f"{reason} ({undone})") if isinstance(e, PortscopeError) \
                else SystemReadError(f"{reason} ({undone})")
            raise err from e
    return Result(plan, after, read_back, plan.persist.path if wrote_file and plan.persist else None)


def _rollback(ex, done: list[Step], fw: FileWrite | None) -> list[str]:
    problems = []
    if fw is not None:
        try:
            sysctld.restore_file(fw.path, fw.old)
        except Exception as e:
            problems.append(f"restore {fw.path}: {e}")
    for step in reversed(done):
        try:
            ex.undo(step)
            if ex.read(step) != step.old:
                raise SystemReadError("value did not come back")
        except Exception as e:
            problems.append(f"{shlex.join(step.undo_argv)} ({e})")
    return problems
