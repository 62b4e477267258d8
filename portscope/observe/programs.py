"""The failure-counting programs, assembled from the running kernel's own layouts.

Two programs per syscall (connect, bind, sendto, sendmsg), on the syscalls:sys_enter_* and
sys_exit_* tracepoints:

* entry: copy the user's sockaddr (bpf_probe_read_user, at most 28 bytes, bounded by the
  addrlen argument), keep it only for AF_INET/AF_INET6, normalise the bytes that are not
  address or port (sin_zero, flowinfo, scope id) and stash it with the fd in an LRU hash
  keyed by pid_tgid. That is all the work a successful call pays for.
* exit: return at once unless ret is -EADDRNOTAVAIL, -EADDRINUSE or -EAGAIN; then take the
  stash, add tgid, comm, cgroup id and the task's network namespace inode
  (task->nsproxy->net_ns->ns.inum, offsets from BTF) and add one to the count of that key.
  For sendto/sendmsg, EAGAIN is counted only when the socket is still unbound afterwards
  (task->files->fdt->fd[fd]->private_data->sk->skc_num == 0): that is the autobind
  failure; a full send buffer of a non-blocking socket also says EAGAIN but leaves a bound
  socket.

Count key (64 bytes): tgid u32 | netns u32 | cgroup u64 | comm[16] | sockaddr[28] | syscall
u16 | errno u16. Value: u64 count.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import bpfasm as A

if TYPE_CHECKING:
    from .btf import BTF
    from .tracefs import Tracepoint


from .bpfasm import FP, R0, R1, R2, R3, R4, R6, R7, R8, R9

EADDRNOTAVAIL, EADDRINUSE, EAGAIN = 99, 98, 11
ERRNO_NAMES = {EADDRNOTAVAIL: "EADDRNOTAVAIL", EADDRINUSE: "EADDRINUSE", EAGAIN: "EAGAIN"}
AF_INET, AF_INET6 = 2, 10
SOCKADDR_MAX = 28
KEY_SIZE, STASH_SIZE = 64, 40
BPF_ANY, BPF_NOEXIST = 0, 1


@dataclass(frozen=True)
class Syscall:
    """One watched syscall: its code in the count key and where its arguments are."""
    code: int
    name: str
    addr_field: str              # the sockaddr pointer (or user_msghdr pointer for sendmsg)
    len_field: str | None        # its length argument; sendmsg takes msg_namelen instead
    via_msghdr: bool = False
    unbound_check: bool = False  # EAGAIN counts only if the socket stayed unbound
    addr_arg: int = 1            # argument positions, for reading them from pt_regs at exit
    len_arg: int | None = 2


SYSCALLS = (
    Syscall(1, "connect", "uservaddr", "addrlen"),
    Syscall(2, "bind", "umyaddr", "addrlen"),
    Syscall(3, "sendto", "addr", "addr_len", unbound_check=True, addr_arg=4, len_arg=5),
    Syscall(4, "sendmsg", "msg", None, via_msghdr=True, unbound_check=True, len_arg=None),
)
BY_CODE = {s.code: s for s in SYSCALLS}


@dataclass(frozen=True)
class KernelLayout:
    """Offsets read from BTF at run time (see btf.py)."""
    task_nsproxy: int
    nsproxy_net: int
    net_inum: int
    task_files: int
    files_fdt: int
    fdt_fd: int
    file_private: int
    socket_sk: int
    sk_num: int

    @classmethod
    def from_btf(cls, b: "BTF") -> "KernelLayout":
        """Read every offset from the running kernel's BTF."""
        return cls(b.offset("task_struct.nsproxy"), b.offset("nsproxy.net_ns"), b.offset("net.ns.inum"),
                   b.offset("task_struct.files"), b.offset("files_struct.fdt"), b.offset("fdtable.fd"),
                   b.offset("file.private_data"), b.offset("socket.sk"), b.offset("sock_common.skc_num"))


# where a syscall's arguments sit in the pt_regs saved at entry (they are still there at exit)
_ARG_REGS = {"x86_64": ("di", "si", "dx", "r10", "r8", "r9"),
             # arm64 overwrites x0 with the return value; the kernel keeps the first argument in orig_x0
             "aarch64": ("orig_x0", "regs", "regs", "regs", "regs", "regs")}


def arg_offsets(b: "BTF", machine: str) -> tuple[int, ...] | None:
    """Byte offsets in struct pt_regs of syscall arguments 0..5 on this architecture (BTF),
    or None where portscope does not know the calling convention."""
    regs = _ARG_REGS.get(machine)
    if regs is None:
        return None
    out = []
    for i, r in enumerate(regs):
        out.append(b.offset(f"pt_regs.{r}") + (8 * i if r == "regs" else 0))
    return tuple(out)


def _read_sockaddr(p: A.Program, sc: Syscall, dst: int, msg: int, out: str) -> None:
    """R3 = the user pointer argument, R2 = its length (u32): copy at most 28 bytes of
    sockaddr to the stack at `dst` (zeroed before), keep only AF_INET/AF_INET6 and clear the
    bytes that are not address or port. Jumps to `out` when there is nothing to count."""
    if sc.via_msghdr:
        p.jmp("jeq", R3, out, imm=0)
        p.mov(R1, FP).add(R1, imm=msg).mov(R2, imm=16).call("probe_read_user")
        p.ldx(8, R3, FP, msg)
        p.ldx(4, R2, FP, msg + 8)
    p.jmp("jeq", R3, out, imm=0)
    p.jmp("jle", R2, "len_ok", imm=SOCKADDR_MAX)
    p.mov(R2, imm=SOCKADDR_MAX)
    p.label("len_ok")
    p.mov(R1, FP).add(R1, imm=dst).call("probe_read_user")
    p.ldx(2, R1, FP, dst)
    p.jmp("jeq", R1, "v4", imm=AF_INET)
    p.jmp("jeq", R1, "v6", imm=AF_INET6)
    p.ja(out)
    p.label("v4")                       # sin_zero and beyond: not part of the address
    p.st(8, FP, dst + 8, 0).st(8, FP, dst + 16, 0).st(4, FP, dst + 24, 0)
    p.ja("sockaddr_ok")
    p.label("v6")                       # flowinfo and scope id
    p.st(4, FP, dst + 4, 0).st(4, FP, dst + 24, 0)
    p.label("sockaddr_ok")


def entry_program(sc: Syscall, fields: "Tracepoint", stash_fd: int) -> bytes:
    """sys_enter_<sc>: stash the INET sockaddr and fd under pid_tgid."""
    S = -40                     # stash value on the stack: sockaddr[28] sc u16 pad u16 fd u32 pad
    PID = -48
    MSG = -64                   # user_msghdr head: msg_name u64, msg_namelen u32
    p = A.Program()
    p.mov(R6, R1)
    p.zero(FP, MSG, 64)
    p.ldx(8, R3, R6, fields.field(sc.addr_field))
    if not sc.via_msghdr:
        assert sc.len_field is not None
        p.ldx(4, R2, R6, fields.field(sc.len_field))
    _read_sockaddr(p, sc, S, MSG, "out")
    p.st(2, FP, S + 28, sc.code)
    p.ldx(4, R1, R6, fields.field("fd"))
    p.stx(4, FP, S + 32, R1)
    p.call("get_current_pid_tgid")
    p.stx(8, FP, PID, R0)
    p.ld_map_fd(R1, stash_fd).mov(R2, FP).add(R2, imm=PID).mov(R3, FP).add(R3, imm=S).mov(R4, imm=BPF_ANY)
    p.call("map_update_elem")
    p.label("out")
    p.mov(R0, imm=0).exit()
    return p.assemble()


def _read_kernel_ptr(p: A.Program, tmp: int, fail: str) -> None:
    """R3 holds an address: load the pointer stored there into R3 (via the stack); 0 -> fail."""
    p.mov(R1, FP).add(R1, imm=tmp).mov(R2, imm=8).call("probe_read_kernel")
    p.ldx(8, R3, FP, tmp)
    p.jmp("jeq", R3, fail, imm=0)


def exit_program(sc: Syscall, fields: "Tracepoint", stash_fd: int | None, counts_fd: int, lay: KernelLayout,
                 args: tuple[int, ...] | None = None) -> bytes:
    """sys_exit_<sc>: count the failed call under its full key.

    With `args` (pt_regs offsets of the syscall arguments) the program reads the sockaddr
    itself, from the registers saved at entry (bpf_get_current_task_btf + bpf_task_pt_regs,
    kernel 5.15+): no entry program, no stash, and a successful call costs one comparison.
    Without, it takes what the entry program stashed."""
    KEY, PID, TMP, ONE, FD, MSG = -64, -72, -80, -88, -96, -112
    p = A.Program()
    p.mov(R6, R1)
    p.ldx(8, R7, R6, fields.field("ret"))
    for e in (EADDRNOTAVAIL, EADDRINUSE, EAGAIN):
        p.jmp("jeq", R7, "hit", imm=-e)
    p.ja("out")
    p.label("hit")
    p.zero(FP, -112, 112)
    p.call("get_current_pid_tgid")
    p.stx(8, FP, PID, R0)
    if args is not None:
        p.call("get_current_task_btf").mov(R1, R0).call("task_pt_regs")
        p.mov(R9, R0)

        def arg(i: int, slot: int) -> None:
            p.mov(R3, R9).add(R3, imm=args[i])
            p.mov(R1, FP).add(R1, imm=slot).mov(R2, imm=8).call("probe_read_kernel")
        arg(0, FD)
        arg(sc.addr_arg, TMP)
        if sc.len_arg is not None:
            arg(sc.len_arg, ONE)
            p.ldx(4, R2, FP, ONE)
            p.st(8, FP, ONE, 0)
        p.ldx(8, R3, FP, TMP)
        _read_sockaddr(p, sc, KEY + 32, MSG, "out")
        p.st(2, FP, KEY + 60, sc.code)
    else:
        if stash_fd is None:
            raise ValueError("exit_program needs either the pt_regs offsets or the stash map")
        _from_stash(p, sc, stash_fd, KEY, PID, FD)
    _count_tail(p, sc, counts_fd, lay, KEY, PID, TMP, ONE, FD)
    return p.assemble()


def _from_stash(p: A.Program, sc: Syscall, stash_fd: int, KEY: int, PID: int, FD: int) -> None:
    p.ld_map_fd(R1, stash_fd).mov(R2, FP).add(R2, imm=PID).call("map_lookup_elem")
    p.jmp("jeq", R0, "out", imm=0)
    p.mov(R8, R0)
    for i in range(4):                  # sockaddr[28] + syscall code -> key[32:64]
        p.ldx(8, R1, R8, 8 * i).stx(8, FP, KEY + 32 + 8 * i, R1)
    p.ldx(4, R1, R8, 32).stx(4, FP, FD, R1)
    p.ld_map_fd(R1, stash_fd).mov(R2, FP).add(R2, imm=PID).call("map_delete_elem")
    p.ldx(2, R1, FP, KEY + 60)
    p.jmp("jne", R1, "out", imm=sc.code)        # a stash left by another syscall


def _count_tail(p: A.Program, sc: Syscall, counts_fd: int, lay: KernelLayout,
                KEY: int, PID: int, TMP: int, ONE: int, FD: int) -> None:
    """errno, the unbound check, attribution (tgid, cgroup, comm, netns), then +1."""
    p.mov(R1, imm=0).alu("sub", R1, R7)
    p.stx(2, FP, KEY + 62, R1)
    if sc.unbound_check:
        p.jmp("jne", R7, "attrib", imm=-EAGAIN)
        p.call("get_current_task")
        p.mov(R3, R0).add(R3, imm=lay.task_files)
        _read_kernel_ptr(p, TMP, "out")
        p.add(R3, imm=lay.files_fdt)
        _read_kernel_ptr(p, TMP, "out")
        p.add(R3, imm=lay.fdt_fd)
        _read_kernel_ptr(p, TMP, "out")
        p.ldx(4, R1, FP, FD).alu("lsh", R1, imm=3).add(R3, R1)
        _read_kernel_ptr(p, TMP, "out")          # struct file *
        p.add(R3, imm=lay.file_private)
        _read_kernel_ptr(p, TMP, "out")          # struct socket *
        p.add(R3, imm=lay.socket_sk)
        _read_kernel_ptr(p, TMP, "out")          # struct sock *
        p.add(R3, imm=lay.sk_num)
        p.st(8, FP, TMP, 0)
        p.mov(R1, FP).add(R1, imm=TMP).mov(R2, imm=2).call("probe_read_kernel")
        p.jmp("jne", R0, "out", imm=0)
        p.ldx(2, R1, FP, TMP)
        p.jmp("jne", R1, "out", imm=0)           # bound: a full buffer, not autobind
    p.label("attrib")
    p.ldx(8, R1, FP, PID).alu("rsh", R1, imm=32).stx(4, FP, KEY, R1)
    p.call("get_current_cgroup_id")
    p.stx(8, FP, KEY + 8, R0)
    p.mov(R1, FP).add(R1, imm=KEY + 16).mov(R2, imm=16).call("get_current_comm")
    p.call("get_current_task")
    p.mov(R3, R0).add(R3, imm=lay.task_nsproxy)
    _read_kernel_ptr(p, TMP, "count")
    p.add(R3, imm=lay.nsproxy_net)
    _read_kernel_ptr(p, TMP, "count")
    p.add(R3, imm=lay.net_inum)
    p.mov(R1, FP).add(R1, imm=KEY + 4).mov(R2, imm=4).call("probe_read_kernel")
    p.label("count")
    p.ld_map_fd(R1, counts_fd).mov(R2, FP).add(R2, imm=KEY).call("map_lookup_elem")
    p.jmp("jeq", R0, "insert", imm=0)
    p.mov(R1, imm=1).atomic_add(8, R0, 0, R1)
    p.ja("out")
    p.label("insert")
    p.st(8, FP, ONE, 1)
    p.ld_map_fd(R1, counts_fd).mov(R2, FP).add(R2, imm=KEY).mov(R3, FP).add(R3, imm=ONE)
    p.mov(R4, imm=BPF_NOEXIST).call("map_update_elem")
    p.jmp("jeq", R0, "out", imm=0)
    # another CPU inserted the same key in between: add to its entry
    p.ld_map_fd(R1, counts_fd).mov(R2, FP).add(R2, imm=KEY).call("map_lookup_elem")
    p.jmp("jeq", R0, "out", imm=0)
    p.mov(R1, imm=1).atomic_add(8, R0, 0, R1)
    p.label("out")
    p.mov(R0, imm=0).exit()


@dataclass(frozen=True)
class Failure:
    """One row of the count map, decoded."""
    syscall: str
    errno: str
    count: int
    pid: int
    comm: str
    cgroup: int
    netns: int
    dst: str | None
    dport: int | None


def decode(key: bytes, value: bytes) -> Failure:
    """One row of the count map as a Failure."""
    tgid, netns, cgroup = struct.unpack_from("<IIQ", key, 0)
    comm = key[16:32].split(b"\0", 1)[0].decode(errors="replace")
    fam = struct.unpack_from("<H", key, 32)[0]
    port = struct.unpack_from(">H", key, 34)[0]
    if fam == AF_INET:
        dst = str(ipaddress.IPv4Address(key[36:40]))
    elif fam == AF_INET6:
        dst = str(ipaddress.IPv6Address(key[40:56]))
    else:
        dst, port = None, None
    sc, err = struct.unpack_from("<HH", key, 60)
    s = BY_CODE.get(sc)
    return Failure(s.name if s else str(sc), ERRNO_NAMES.get(err, str(err)), struct.unpack("<Q", value[:8])[0],
                   tgid, comm, cgroup, netns, dst, port)
