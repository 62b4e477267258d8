"""The bpf(2) and perf_event_open(2) system calls, through ctypes, with every object owned.

An `Objects` set owns every file descriptor this module opens (maps, programs, perf events)
and closes all of them on exit from its `with` block, whatever the exit (an exception, a
verifier refusal half-way through loading, Ctrl-C). Nothing else here keeps an fd.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

from ..errors import NotPermitted, Unsupported

# syscall numbers per architecture (arch/*/entry/syscalls)
_NR = {"x86_64": (321, 298), "aarch64": (280, 241), "arm64": (280, 241),
       "riscv64": (280, 241), "ppc64le": (361, 319), "s390x": (351, 331)}

BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 1, 2, 3
BPF_MAP_GET_NEXT_KEY, BPF_PROG_LOAD = 4, 5
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_LINK_CREATE, BPF_ITER_CREATE = 28, 33
PROG_TRACING = 26
ATTACH_TRACE_ITER = 28
MAP_HASH, MAP_LRU_HASH = 1, 9
F_NO_PREALLOC = 1        # allocate hash entries on insert: an idle counter costs almost nothing
PROG_TRACEPOINT = 5
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
ATTR_SIZE = 128            # union bpf_attr: the kernel wants the unused tail zeroed
LOG_SIZE = 1 << 20

_libc = None


class BPFError(OSError):
    """A bpf(2) or perf_event_open(2) call failed; `log` holds the verifier's words if any."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what, self.log = what, log
        self.program: str | None = None


def _nr() -> tuple[int, int]:
    m = os.uname().machine     # (the platform module costs ~3 ms of imports)
    if m not in _NR:
        raise Unsupported(f"eBPF loading is not implemented for {m}")
    return _NR[m]


def _syscall(nr: int, *args) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    r = _libc.syscall(ctypes.c_long(nr), *args)
    if r < 0:
        return -ctypes.get_errno()
    return r


def bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr): the result, or -errno."""
    return _syscall(_nr()[0], ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))


def _addr(buf) -> int:
    return ctypes.addressof(buf)


class Objects:
    """Owner of BPF maps, programs and perf events; closes all of them on exit."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._keep: list = []            # ctypes buffers the kernel may still point at

    def __enter__(self) -> "Objects":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every descriptor opened so far (safe to call twice)."""
        # perf events first (they hold the programs), then programs, then maps
        while self.fds:
            fd = self.fds.pop()
            try:
                os.close(fd)
            except OSError:
                pass

    def _own(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def map_create(self, kind: int, key_size: int, value_size: int, max_entries: int, name: str,
                   flags: int = 0) -> "Map":
        """BPF_MAP_CREATE; the map is owned (closed with the others)."""
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIIII", attr, 0, kind, key_size, value_size, max_entries, flags)
        struct.pack_into("16s", attr, 28, name.encode()[:15])
        fd = bpf(BPF_MAP_CREATE, attr)
        if fd < 0:
            raise BPFError(-fd, f"creating BPF map {name}")
        return Map(self._own(fd), key_size, value_size, name)

    def prog_load(self, insns: bytes, name: str, kind: int = PROG_TRACEPOINT, license: str = "GPL",
                  attach_type: int = 0, attach_btf_id: int = 0) -> int:
        """Load a program; on refusal BPFError carries the verifier log. Tracing programs
        (an iterator) name what they attach to: `attach_type` and the kernel BTF id."""
        code = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(license.encode())
        log = ctypes.create_string_buffer(LOG_SIZE)
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIQQIIQ", attr, 0, kind, len(insns) // 8, _addr(code), _addr(lic),
                         0, 0, 0)
        struct.pack_into("16s", attr, 48, name.encode()[:15])
        # expected_attach_type @68, attach_btf_id @108 (union bpf_attr, BPF_PROG_LOAD)
        struct.pack_into("<I", attr, 68, attach_type)
        struct.pack_into("<I", attr, 108, attach_btf_id)
        fd = bpf(BPF_PROG_LOAD, attr)
        if fd < 0:
            # load again with the log on: the first try stays cheap, the refusal gets words
            struct.pack_into("<IIQ", attr, 24, 1, LOG_SIZE, _addr(log))
            fd = bpf(BPF_PROG_LOAD, attr)
            if fd < 0:
                raise BPFError(-fd, f"loading BPF program {name}", log.value.decode(errors="replace"))
        return self._own(fd)

    def link_create(self, prog_fd: int, attach_type: int, name: str) -> int:
        """BPF_LINK_CREATE (for an iterator: attach_type ATTACH_TRACE_ITER, no target); owned."""
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<III", attr, 0, prog_fd, 0, attach_type)
        fd = bpf(BPF_LINK_CREATE, attr)
        if fd < 0:
            raise BPFError(-fd, f"linking BPF program {name}")
        return self._own(fd)

    def attach_tracepoint(self, tp_id: int, prog_fd: int, name: str) -> int:
        """perf_event_open(PERF_TYPE_TRACEPOINT) + SET_BPF + ENABLE. One event is enough for
        every CPU: the program is attached to the tracepoint itself, not to the event's CPU."""
        pe_nr = _nr()[1]
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        # type, size, config, sample_period, sample_type, read_format, flags, wakeup_events
        struct.pack_into("<IIQQQQQI", attr, 0, PERF_TYPE_TRACEPOINT, ATTR_SIZE, tp_id, 1, 0, 0, 0, 1)
        fd = _syscall(pe_nr, attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                      ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
        if fd < 0:
            raise BPFError(-fd, f"perf_event_open on tracepoint {name}")
        self._own(fd)
        try:
            fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
            fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except OSError as e:
            raise BPFError(e.errno or errno.EINVAL, f"attaching to tracepoint {name}") from None
        return fd


def iter_open(link_fd: int) -> int:
    """BPF_ITER_CREATE: a new reading of an iterator link, as a file descriptor the caller
    reads to EOF and closes. The network namespace of a socket iterator is the calling
    thread's at this call."""
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<I", attr, 0, link_fd)
    fd = bpf(BPF_ITER_CREATE, attr)
    if fd < 0:
        raise BPFError(-fd, "opening a BPF iterator")
    return fd


class Map:
    """A BPF hash map seen from user space: raw bytes keys and values."""

    def __init__(self, fd: int, key_size: int, value_size: int, name: str) -> None:
        self.fd, self.key_size, self.value_size, self.name = fd, key_size, value_size, name

    def _elem(self, cmd: int, key: bytes, value=None, flags: int = 0) -> int:
        k = ctypes.create_string_buffer(key, self.key_size)
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIQQQ", attr, 0, self.fd, 0, _addr(k), _addr(value) if value is not None else 0, flags)
        return bpf(cmd, attr)

    def lookup(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        v = ctypes.create_string_buffer(self.value_size)
        r = self._elem(BPF_MAP_LOOKUP_ELEM, key, v)
        if r == -errno.ENOENT:
            return None
        if r < 0:
            raise BPFError(-r, f"reading BPF map {self.name}")
        return v.raw

    def pop(self, key: bytes) -> bytes | None:
        """Read and delete in one step (hash maps: kernel 5.14+): an increment that lands
        after it makes a new entry instead of being lost."""
        v = ctypes.create_string_buffer(self.value_size)
        r = self._elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, v)
        if r == -errno.ENOENT:
            return None
        if r < 0:
            raise BPFError(-r, f"taking from BPF map {self.name}")
        return v.raw

    def update(self, key: bytes, value: bytes) -> None:
        """Create or replace `key`."""
        v = ctypes.create_string_buffer(value, self.value_size)
        r = self._elem(BPF_MAP_UPDATE_ELEM, key, v)
        if r < 0:
            raise BPFError(-r, f"writing BPF map {self.name}")

    def delete(self, key: bytes) -> bool:
        """Delete `key`; False when it was not there."""
        r = self._elem(BPF_MAP_DELETE_ELEM, key)
        if r < 0 and r != -errno.ENOENT:
            raise BPFError(-r, f"deleting from BPF map {self.name}")
        return r == 0

    def keys(self) -> list[bytes]:
        """Every key now in the map (BPF_MAP_GET_NEXT_KEY walk)."""
        out: list[bytes] = []
        nxt = ctypes.create_string_buffer(self.key_size)
        cur: bytes | None = None
        while True:
            k = ctypes.create_string_buffer(cur or b"", self.key_size)
            attr = ctypes.create_string_buffer(ATTR_SIZE)
            struct.pack_into("<IIQQ", attr, 0, self.fd, 0, _addr(k) if cur is not None else 0, _addr(nxt))
            r = bpf(BPF_MAP_GET_NEXT_KEY, attr)
            if r == -errno.ENOENT:
                return out
            if r < 0:
                raise BPFError(-r, f"walking BPF map {self.name}")
            cur = nxt.raw
            out.append(cur)
            if len(out) > 1 << 20:   # a map cannot hold more; guards against a changing walk
                return out

    def items(self) -> dict[bytes, bytes]:
        """key -> value for every key (a key deleted during the walk is skipped)."""
        out = {}
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                out[k] = v
        return out


def as_cli_error(err: OSError, doing: str) -> Exception:
    """The CLI's error for a failed load: NotPermitted for EPERM/EACCES, else Unsupported."""
    what = err.args[1] if len(err.args) > 1 else str(err)
    if err.errno in (errno.EPERM, errno.EACCES):
        hint = "run as root" if os.geteuid() else "needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN or root"
        return NotPermitted(f"{doing}: {what} ({hint})")
    return Unsupported(f"{doing}: {what}")
