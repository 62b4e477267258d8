"""Load and attach the failure counter; read its counts; close everything it opened.

    with FailureCounter() as fc:      # loads in well under a second, or raises LoadError
        ...
        rows = fc.read()             # every key counted since load

All maps, programs and perf events belong to one `bpf.Objects`, closed on exit from the
block (also when loading fails half-way or on KeyboardInterrupt).
"""
from __future__ import annotations

import os
import platform

from ..errors import PortscopeError
from . import bpf, btf, programs, tracefs
from .programs import SYSCALLS, Failure

STASH_ENTRIES = 8192      # calls in flight at once (an LRU: stale entries of dead threads age out)
COUNT_ENTRIES = 10240     # distinct (syscall, errno, tgid, comm, cgroup, netns, dst, dport) keys


class LoadError(Exception):
    """The counter could not be loaded. `cause` is the OSError/PortscopeError behind it,
    `program` the program the kernel refused (if any), `log` the verifier's log."""

    def __init__(self, message: str, cause: BaseException | None = None, program: str | None = None,
                 log: str = "") -> None:
        super().__init__(message)
        self.cause, self.program, self.log = cause, program, log


class FailureCounter:
    """The eBPF failure counter of every syscall in `syscalls` (names from programs.SYSCALLS)."""

    def __init__(self, syscalls: tuple[str, ...] | None = None, *, mode: str | None = None) -> None:
        self.force_mode = mode          # tests: "regs" or "stash"; None picks the best that loads
        self.syscalls = [s for s in SYSCALLS if syscalls is None or s.name in syscalls]
        self.objects: bpf.Objects | None = None
        self.counts: bpf.Map | None = None
        self.mode: str | None = None    # "regs": exit programs only; "stash": entry + exit (kernels < 5.15)

    def __enter__(self) -> "FailureCounter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Load and attach everything, or raise LoadError with nothing left open."""
        objs = bpf.Objects()
        self.objects = objs
        try:
            self._load(objs)
        except bpf.BPFError as e:
            self.close()
            raise LoadError(str(e.args[1]), e, getattr(e, "program", None), e.log) from None
        except (OSError, PortscopeError, btf.BTFError) as e:
            self.close()
            raise LoadError(str(e), e) from None
        except BaseException:
            self.close()
            raise

    def _load(self, objs: bpf.Objects) -> None:
        if not os.path.exists(btf.VMLINUX):
            raise btf.BTFError(f"this kernel has no BTF ({btf.VMLINUX}): the namespace of a failure cannot be read")
        b = btf.load()
        layout = programs.KernelLayout.from_btf(b)
        try:
            args = programs.arg_offsets(b, platform.machine())
        except btf.BTFError:
            args = None
        modes = ["regs", "stash"] if args is not None else ["stash"]
        if self.force_mode:
            modes = [self.force_mode]
        names = [f"syscalls:sys_{d}_{s.name}" for s in self.syscalls for d in ("enter", "exit")]
        tps = tracefs.tracepoints(names)
        for mode in modes:
            try:
                self._load_mode(objs, mode, tps, layout, args)
                self.mode = mode
                return
            except bpf.BPFError as e:
                # kernels before 5.15 lack bpf_task_pt_regs: fall back to entry programs
                if mode == modes[-1] or getattr(e, "program", None) != f"ps_out_{self.syscalls[0].name}":
                    raise
                objs.close()

    def _load_mode(self, objs: bpf.Objects, mode: str, tps, layout, args) -> None:
        counts = objs.map_create(bpf.MAP_HASH, programs.KEY_SIZE, 8, COUNT_ENTRIES, "ps_failures",
                                 bpf.F_NO_PREALLOC)
        self.counts = counts
        stash = None
        if mode == "stash":
            stash = objs.map_create(bpf.MAP_LRU_HASH, 8, programs.STASH_SIZE, STASH_ENTRIES, "ps_stash")
        for s in self.syscalls:
            enter, leave = tps[f"syscalls:sys_enter_{s.name}"], tps[f"syscalls:sys_exit_{s.name}"]
            code_out = programs.exit_program(s, leave, stash.fd if stash else None, counts.fd, layout,
                                             args if mode == "regs" else None)
            fd_out = _load_named(objs, code_out, f"ps_out_{s.name}")
            if stash is not None:
                fd_in = _load_named(objs, programs.entry_program(s, enter, stash.fd), f"ps_in_{s.name}")
            # exit first: an entry stash without its exit program would only age out
            objs.attach_tracepoint(leave.id, fd_out, leave.name)
            if stash is not None:
                objs.attach_tracepoint(enter.id, fd_in, enter.name)

    def read(self) -> list[Failure]:
        """Every counted key since load (counts only grow)."""
        if self.counts is None:
            return []
        return [programs.decode(k, v) for k, v in self.counts.items().items()]

    def close(self) -> None:
        """Detach and close every map, program and perf event."""
        if self.objects is not None:
            self.objects.close()
        self.objects, self.counts = None, None


def _load_named(objs: bpf.Objects, code: bytes, name: str) -> int:
    try:
        return objs.prog_load(code, name)
    except bpf.BPFError as e:
        e.program = name           # which program the kernel refused, for the one-line error
        raise
