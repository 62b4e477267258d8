"""TCP sockets through a BPF socket iterator (`iter/tcp`): one walk, the auto-bound bit included.

Why: sock_diag exports whether the program bound a socket's port (SOCK_BINDPORT_LOCK in
`sk_userlocks`, what the pressure model needs) only as a bytecode test, so an exact read
walks the kernel's socket hash twice (the AUTO half, then the rest), and each walk costs
what the hash holds. A BPF iterator program runs once per socket during one walk of the
established and listening hashes, reads `sk_userlocks` itself and writes a fixed record
with bpf_seq_write(); reading the iterator's file descriptor returns the records. At
100k sockets the walk takes about 60 ms against about 125 ms for the two sock_diag walks
(the README's Performance section has the figures).

Records are 88 bytes laid out like the head of a sock_diag reply (16 bytes of netlink
header, then inet_diag_msg: family @16, state @17, sport @20, dport @22, src @24, dst @40,
uid @80, inode @84), so netlink.py parses them with the same code; byte 0 carries the
AUTO_* code, decided as sock_diag's bytecode would (TIME_WAIT and request sockets have no
bind lock; what they report is what sock_diag reports: the TIME_WAIT sub-state, SYN_RECV
for request sockets, uid and inode 0).

What it needs: root (loading a tracing program: CAP_BPF and CAP_PERFMON), the kernel's
BTF (/sys/kernel/btf/vmlinux) and Linux 5.9+ (iter/tcp, bpf_skc_to_tcp_sock). Member
offsets come from the BTF at run time (no headers, no compiler); the numbers are kept in
/run/portscope/ so that only the first read after boot parses the 5 MB of BTF. When
anything is missing, `reader()` raises Unavailable with the reason and the caller reads
sock_diag. PORTSCOPE_TCP_READER=sock_diag turns the iterator off (netlink.read_table;
benchmarks and tests compare the two).

BOUND_INACTIVE sockets (bound, neither connected nor listening) live only in the bind
hash, which the iterator does not walk: the caller still asks sock_diag for them.
"""
from __future__ import annotations

import _thread
import os
import struct

from ..observe import bpf, bpfasm, btf
from ..observe.bpfasm import FP, R0, R1, R2, R3, R4, R6, R7, R8, R9
from .table import AUTO_NO, AUTO_UNKNOWN, AUTO_YES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

RECORD = 88
# Each read() of the iterator's file returns at most its 32 KiB seq buffer. A read asking
# for exactly a whole number of records that fits that buffer (PIECE) gets exactly that
# much, and a readv() of several such pieces is several reads in one system call (the file
# has no read_iter, so the kernel loops over the pieces and stops at the first short one).
# One readv() per batch, not one read() per 32 KiB: ~30 calls for a 100k-socket walk, not
# ~270, and each call returns the interpreter lock, which a busy exporter's other threads
# then hold while this one waits. The batches go to the parser about BATCH_BYTES at a
# time: its fixed cost per batch was a third of its time at 32 KiB batches, while batches
# larger than the CPU's cache parse slower.
SEQ_BYTES = 32 << 10
PIECE = SEQ_BYTES // RECORD * RECORD
BATCH_BYTES = 8 * PIECE
CACHE_DIR = "/run/portscope"
_CACHE_NAME = "tcpiter-v1"
AF_INET, AF_INET6 = 2, 10
_SOCK_BINDPORT_LOCK = 8           # include/net/sock.h (4 is SOCK_BINDADDR_LOCK)
_TW, _NEW_SYN_RECV, _SYN_RECV = 6, 12, 3

# (name, BTF path) of every number the program needs; the order is the cache file's
_FIELDS = (
    ("family", "sock_common.skc_family"), ("state", "sock_common.skc_state"),
    ("num", "sock_common.skc_num"), ("dport", "sock_common.skc_dport"),
    ("saddr", "sock_common.skc_rcv_saddr"), ("daddr", "sock_common.skc_daddr"),
    ("saddr6", "sock_common.skc_v6_rcv_saddr"), ("daddr6", "sock_common.skc_v6_daddr"),
    ("userlocks", "tcp_sock.inet_conn.icsk_inet.sk.sk_userlocks"),
    ("sk_socket", "tcp_sock.inet_conn.icsk_inet.sk.sk_socket"),
    ("substate", "tcp_timewait_sock.tw_sk.tw_substate"),
)


class Unavailable(Exception):
    """The iterator cannot be used here; the message says why (for --verbose notes)."""


class Layout:
    """The running kernel's numbers: the BTF id of bpf_iter_tcp and member offsets."""

    __slots__ = ("func_id", "off", "ino_delta")

    def __init__(self, func_id: int, off: dict[str, int], ino_delta: int) -> None:
        self.func_id, self.off, self.ino_delta = func_id, off, ino_delta

    @classmethod
    def from_btf(cls, b: btf.BTF) -> "Layout":
        """Read every number from parsed BTF; BTFError names what is missing."""
        off = {name: b.offset(path) for name, path in _FIELDS}
        # sock_i_ino(): SOCK_INODE(sk->sk_socket)->i_ino; struct socket sits inside
        # struct socket_alloc next to the inode
        delta = b.offset("socket_alloc.vfs_inode") - b.offset("socket_alloc.socket") + b.offset("inode.i_ino")
        return cls(b.func_id("bpf_iter_tcp"), off, delta)

    def words(self) -> list[int]:
        """The numbers in cache-file order."""
        return [self.func_id, self.ino_delta, *(self.off[n] for n, _ in _FIELDS)]

    @classmethod
    def from_words(cls, words: list[int]) -> "Layout":
        """The inverse of words()."""
        if len(words) != 2 + len(_FIELDS):
            raise ValueError("wrong number of fields")
        return cls(words[0], {n: w for (n, _), w in zip(_FIELDS, words[2:])}, words[1])


def _kernel_key() -> str:
    # not the BTF file's mtime: sysfs gives an inode the time it was (re)created in memory
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    u = os.uname()
    return f"{u.release} {u.version} {u.machine} {os.stat(btf.VMLINUX).st_size} {boot}"


def layout(cache_dir: str | None = CACHE_DIR) -> Layout:
    """This kernel's Layout, from the cache when it was written for this very kernel
    (release, build, BTF size, boot), else from the BTF (then cached, if the directory
    can be written: the cache is an optimisation, never required)."""
    key = _kernel_key()
    path = os.path.join(cache_dir, _CACHE_NAME) if cache_dir else None
    if path:
        try:
            with open(path) as f:
                first, _, rest = f.read().partition("\n")
            if first == key:
                return Layout.from_words([int(w) for w in rest.split()])
        except (OSError, ValueError):
            pass
    lay = Layout.from_btf(btf.load())
    if path and cache_dir:
        try:
            os.makedirs(cache_dir, mode=0o755, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            try:
                with open(tmp, "w") as f:
                    f.write(key + "\n" + " ".join(map(str, lay.words())) + "\n")
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError:
            pass
    return lay


def program(lay: Layout, states: int, sport: tuple[int, int] | None, family: int, model: bool,
            inodes: bool = True) -> bytes:
    """The iterator program: one RECORD per socket whose state is in the `states` mask
    (sock_diag's meaning: TIME_WAIT sockets by sub-state, request sockets by NEW_SYN_RECV,
    which SYN_RECV implies), local port in `sport` and family `family` (0: both).
    `model`: sockets without a remote port get AUTO_UNKNOWN, as read_table(model_auto=True).
    `inodes=False`: every record's inode is 0; reading it costs two more cache misses per
    socket (its struct socket, then the inode beside it), about 10-15 ms at 100k sockets,
    and the pressure model never looks at it."""
    o = lay.off
    if states & (1 << _SYN_RECV):
        states |= 1 << _NEW_SYN_RECV
    rec = -RECORD                      # the record on the stack: rec + field offset
    p = bpfasm.Program()
    p.mov(R6, R1)
    p.ldx(8, R7, R6, 8)                # ctx->sk_common
    p.jmp("jeq", R7, "out", imm=0)
    p.ldx(8, R8, R6, 16)               # ctx->uid
    p.zero(FP, rec, RECORD)
    p.ldx(1, R9, R7, o["state"])
    p.jmp("jne", R9, "not_tw", imm=_TW)
    p.mov(R8, imm=0)
    p.mov(R1, R7).call("skc_to_tcp_timewait_sock")
    p.jmp("jeq", R0, "not_tw", imm=0)
    p.ldx(1, R9, R0, o["substate"])
    p.label("not_tw")
    p.jmp("jne", R9, "not_req", imm=_NEW_SYN_RECV)
    p.mov(R8, imm=0)
    p.label("not_req")
    p.mov(R1, imm=1).alu("lsh", R1, R9).alu("and", R1, imm=states)
    p.jmp("jeq", R1, "out", imm=0)
    p.ldx(2, R2, R7, o["family"])
    if family:
        p.jmp("jne", R2, "out", imm=family)
    p.stx(1, FP, rec + 16, R2)
    p.jmp("jne", R9, "state_ok", imm=_NEW_SYN_RECV)
    p.mov(R9, imm=_SYN_RECV)
    p.label("state_ok")
    p.stx(1, FP, rec + 17, R9)
    p.ldx(2, R3, R7, o["num"])         # host order
    if sport is not None:
        p.jmp("jlt", R3, "out", imm=sport[0])
        p.jmp("jgt", R3, "out", imm=sport[1])
    p.stx(1, FP, rec + 21, R3)         # network order, byte by byte
    p.alu("rsh", R3, imm=8).stx(1, FP, rec + 20, R3)
    p.ldx(2, R4, R7, o["dport"])       # already network order
    p.stx(2, FP, rec + 22, R4)
    p.jmp("jne", R2, "v4", imm=AF_INET6)
    for k in range(0, 16, 4):
        p.ldx(4, R1, R7, o["saddr6"] + k).stx(4, FP, rec + 24 + k, R1)
        p.ldx(4, R1, R7, o["daddr6"] + k).stx(4, FP, rec + 40 + k, R1)
    p.ja("addr_done")
    p.label("v4")
    p.ldx(4, R1, R7, o["saddr"]).stx(4, FP, rec + 24, R1)
    p.ldx(4, R1, R7, o["daddr"]).stx(4, FP, rec + 40, R1)
    p.label("addr_done")
    p.stx(4, FP, rec + 80, R8)
    # the full socket, or NULL for TIME_WAIT and request sockets
    p.mov(R1, R7).call("skc_to_tcp_sock").mov(R7, R0)
    p.st(1, FP, rec, AUTO_YES)
    p.jmp("jeq", R9, "unknown", imm=_SYN_RECV)
    p.jmp("jeq", R9, "unknown", imm=_TW)
    if model:
        p.ldx(2, R1, FP, rec + 22)
        p.jmp("jeq", R1, "unknown", imm=0)
    p.jmp("jeq", R7, "auto_done", imm=0)
    p.ldx(1, R1, R7, o["userlocks"]).alu("and", R1, imm=_SOCK_BINDPORT_LOCK)
    p.jmp("jeq", R1, "auto_done", imm=0)
    p.st(1, FP, rec, AUTO_NO)
    p.ja("auto_done")
    p.label("unknown")
    p.st(1, FP, rec, AUTO_UNKNOWN)
    p.label("auto_done")
    if inodes:
        # the inode, as sock_diag gives it (32 bits): full sockets with a struct socket only
        p.jmp("jeq", R7, "write", imm=0)
        p.ldx(8, R3, R7, o["sk_socket"])
        p.jmp("jeq", R3, "write", imm=0)
        p.add(R3, imm=lay.ino_delta)
        p.mov(R1, FP).add(R1, imm=rec - 8).mov(R2, imm=8).call("probe_read_kernel")
        p.jmp("jne", R0, "write", imm=0)
        p.ldx(8, R1, FP, rec - 8).stx(4, FP, rec + 84, R1)
    p.label("write")
    p.ldx(8, R1, R6, 0).ldx(8, R1, R1, 0)      # ctx->meta->seq
    p.mov(R2, FP).add(R2, imm=rec).mov(R3, imm=RECORD).call("seq_write")
    p.label("out")
    p.mov(R0, imm=0).exit()
    return p.assemble()


class Reader:
    """One loaded and linked iterator program (a states/port/family filter baked in);
    every read() walks the sockets of the calling thread's network namespace."""

    def __init__(self, lay: Layout, states: int, sport: tuple[int, int] | None, family: int,
                 model: bool, inodes: bool = True) -> None:
        code = program(lay, states, sport, family, model, inodes)
        self.objects = objs = bpf.Objects()
        try:
            fd = objs.prog_load(code, "ps_tcp_iter", kind=bpf.PROG_TRACING,
                                attach_type=bpf.ATTACH_TRACE_ITER, attach_btf_id=lay.func_id)
            self.link = objs.link_create(fd, bpf.ATTACH_TRACE_ITER, "ps_tcp_iter")
        except BaseException:
            objs.close()
            raise

    def close(self) -> None:
        """Unload: close the link and the program (a walk already opened finishes)."""
        self.link = -1          # its number may soon name another file: never use it again
        self.objects.close()

    def batches(self) -> "Iterator[bytes]":
        """The records of one walk, about BATCH_BYTES at a time, each a whole number of
        records (a read may end inside one: the rest waits for the next)."""
        if self.link < 0:
            raise Unavailable("the TCP iterator was unloaded (another port range took its place)")
        try:
            fd = bpf.iter_open(self.link)
        except OSError as e:          # e.g. closed meanwhile by another thread's eviction
            raise Unavailable(f"opening the TCP iterator: {e}") from None
        try:
            buf = bytearray(BATCH_BYTES)
            mv = memoryview(buf)
            fill = 0
            while True:
                try:
                    n = os.readv(fd, [mv[at:at + PIECE] for at in range(fill, BATCH_BYTES, PIECE)])
                except OSError as e:
                    raise Unavailable(f"reading the TCP iterator: {e.strerror or e}") from None
                fill += n
                if n and fill < BATCH_BYTES:
                    continue
                cut = fill - fill % RECORD
                if cut:
                    yield bytes(mv[:cut])
                    buf[:fill - cut] = mv[cut:fill]
                    fill -= cut
                if not n:
                    break
            if fill:
                raise Unavailable("the TCP iterator ended inside a record")
        finally:
            mv.release()
            os.close(fd)


MAX_READERS = 8       # filter sets kept loaded (a changed port range makes a new one)
_layout: Layout | None = None
_readers: dict[tuple, Reader] = {}
_refused: str | None = None
_lock = _thread.allocate_lock()     # (_thread: `threading` is not on the pressure path)


def reader(states: int, sport: tuple[int, int] | None, family: int, model: bool,
           inodes: bool = True) -> Reader:
    """The Reader for these filters, loaded once per process (an exporter keeps it between
    scrapes); Unavailable, remembered for the process, when this host cannot run it."""
    r = _readers.get((states, sport, family, model, inodes))
    if r is not None:
        return r
    with _lock:         # the exporter's first scrapes may come at once: load each program once
        return _load(states, sport, family, model, inodes)


def _load(states: int, sport: tuple[int, int] | None, family: int, model: bool, inodes: bool) -> Reader:
    global _layout, _refused
    if _refused is not None:
        raise Unavailable(_refused)
    key = (states, sport, family, model, inodes)
    r = _readers.get(key)
    if r is not None:
        return r
    try:
        if os.geteuid() != 0:
            raise Unavailable("not root (a BPF iterator needs CAP_BPF and CAP_PERFMON)")
        if not os.path.exists(btf.VMLINUX):
            raise Unavailable(f"the kernel has no BTF ({btf.VMLINUX})")
        if _layout is None:
            _layout = layout()
        r = _readers[key] = Reader(_layout, states, sport, family, model, inodes)
        while len(_readers) > MAX_READERS:
            _readers.pop(next(iter(_readers))).close()      # the oldest
        return r
    except Unavailable as e:
        _refused = str(e)
        raise
    except (OSError, btf.BTFError, ValueError, struct.error) as e:
        # an older kernel (no iter/tcp, no bpf_skc_to_tcp_sock), lockdown, a BTF we do
        # not understand: say so once, then sock_diag does the work
        _refused = f"BPF TCP iterator unavailable: {e}"
        raise Unavailable(_refused) from None


def forget() -> None:
    """Close every loaded program and forget a refusal (tests; a long-lived process that
    wants to retry)."""
    global _refused
    with _lock:
        _refused = None
        while _readers:
            _readers.popitem()[1].close()
