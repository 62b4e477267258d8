"""A tiny eBPF instruction assembler: enough to write the counting programs in Python.

Instructions are the kernel's `struct bpf_insn` (include/uapi/linux/bpf.h): 8 bytes,
opcode, dst_reg (low nibble) / src_reg (high nibble), a signed 16-bit offset and a signed
32-bit immediate; `ld_imm64` takes two slots. Jumps are written to labels and resolved by
`Program.assemble`, so the programs read top to bottom without counting instructions.
"""
from __future__ import annotations

import struct

# classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZES = {1: B, 2: H, 4: W, 8: DW}
# modes
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
# source
K, X = 0x00, 0x08
# alu ops
ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50,
           "lsh": 0x60, "rsh": 0x70, "mod": 0x90, "xor": 0xA0, "mov": 0xB0, "arsh": 0xC0}
# jump ops
JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50,
           "jsgt": 0x60, "jsge": 0x70, "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0}
CALL, EXIT = 0x80, 0x90
PSEUDO_MAP_FD = 1

# helper function ids (enum bpf_func_id, stable ABI)
HELPERS = {
    "map_lookup_elem": 1, "map_update_elem": 2, "map_delete_elem": 3,
    "get_current_pid_tgid": 14, "get_current_comm": 16, "get_current_task": 35,
    "get_current_cgroup_id": 80, "probe_read_user": 112, "probe_read_kernel": 113,
    "get_current_task_btf": 158, "task_pt_regs": 175,
    # iterator programs (sockets/tcpiter.py)
    "seq_write": 127, "skc_to_tcp_sock": 137, "skc_to_tcp_timewait_sock": 138,
}

# registers
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10


class AsmError(ValueError):
    """A program that cannot be assembled (undefined label, jump out of range...)."""
    pass


class _Insn:
    """One instruction; `label` is a jump target resolved at assembly, `wide` the upper
    half of an ld_imm64. (A plain class: `dataclasses` would cost the pressure path's
    BPF socket reader ~5 ms of imports.)"""

    __slots__ = ("code", "dst", "src", "off", "imm", "label", "wide")

    def __init__(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
                 label: str | None = None, wide: int | None = None) -> None:
        self.code, self.dst, self.src, self.off, self.imm = code, dst, src, off, imm
        self.label, self.wide = label, wide


class Program:
    """An instruction list with labels; `assemble()` returns the bytecode."""

    def __init__(self) -> None:
        self._insns: list[_Insn] = []
        self._labels: dict[str, int] = {}

    # -- plumbing
    def _emit(self, insn: _Insn) -> "Program":
        self._insns.append(insn)
        return self

    def _slot(self) -> int:
        return sum(2 if i.wide is not None else 1 for i in self._insns)

    def label(self, name: str) -> "Program":
        """Name the next instruction, as a jump target."""
        if name in self._labels:
            raise AsmError(f"label {name!r} defined twice")
        self._labels[name] = self._slot()
        return self

    # -- ALU
    def alu(self, op: str, dst: int, src: int | None = None, imm: int = 0, *, wide: bool = True) -> "Program":
        """dst = dst OP src (a register) or OP imm; 64-bit unless wide=False."""
        cls = ALU64 if wide else ALU
        if src is None:
            return self._emit(_Insn(cls | ALU_OPS[op] | K, dst, 0, 0, imm))
        return self._emit(_Insn(cls | ALU_OPS[op] | X, dst, src, 0, 0))

    def mov(self, dst: int, src: int | None = None, imm: int = 0) -> "Program":
        """dst = src or imm (64-bit)."""
        return self.alu("mov", dst, src, imm)

    def add(self, dst: int, src: int | None = None, imm: int = 0) -> "Program":
        """dst += src or imm (64-bit)."""
        return self.alu("add", dst, src, imm)

    def ld_imm64(self, dst: int, value: int, src: int = 0) -> "Program":
        """dst = a 64-bit constant (two instruction slots)."""
        value &= (1 << 64) - 1
        return self._emit(_Insn(LD | DW | IMM, dst, src, 0, _s32(value & 0xFFFFFFFF), wide=_s32(value >> 32)))

    def ld_map_fd(self, dst: int, fd: int) -> "Program":
        """dst = the map of file descriptor `fd` (the kernel resolves it at load)."""
        return self._emit(_Insn(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, fd, wide=0))

    # -- memory
    def ldx(self, size: int, dst: int, src: int, off: int) -> "Program":
        """dst = *(size bytes *)(src + off)."""
        return self._emit(_Insn(LDX | SIZES[size] | MEM, dst, src, off, 0))

    def stx(self, size: int, dst: int, off: int, src: int) -> "Program":
        """*(size bytes *)(dst + off) = src."""
        return self._emit(_Insn(STX | SIZES[size] | MEM, dst, src, off, 0))

    def st(self, size: int, dst: int, off: int, imm: int) -> "Program":
        """*(size bytes *)(dst + off) = imm."""
        return self._emit(_Insn(ST | SIZES[size] | MEM, dst, 0, off, imm))

    def atomic_add(self, size: int, dst: int, off: int, src: int) -> "Program":
        """*(size bytes *)(dst + off) += src, atomically."""
        if size not in (4, 8):
            raise AsmError("atomic add is 4 or 8 bytes")
        return self._emit(_Insn(STX | SIZES[size] | ATOMIC, dst, src, off, 0))

    def zero(self, base: int, off: int, length: int) -> "Program":
        """Store zeros over [off, off+length) (8-byte aligned), so the verifier sees it initialised."""
        if off % 8 or length % 8:
            raise AsmError("zero() works on 8-byte aligned spans")
        for o in range(off, off + length, 8):
            self.st(8, base, o, 0)
        return self

    # -- control flow
    def jmp(self, op: str, dst: int, target: str, *, src: int | None = None, imm: int = 0) -> "Program":
        """Jump to `target` when dst OP src (a register) or dst OP imm."""
        if src is None:
            return self._emit(_Insn(JMP | JMP_OPS[op] | K, dst, 0, 0, imm, label=target))
        return self._emit(_Insn(JMP | JMP_OPS[op] | X, dst, src, 0, 0, label=target))

    def ja(self, target: str) -> "Program":
        """Jump to `target`."""
        return self._emit(_Insn(JMP | JMP_OPS["ja"], 0, 0, 0, 0, label=target))

    def call(self, helper: str) -> "Program":
        """Call a kernel helper by name (HELPERS)."""
        return self._emit(_Insn(JMP | CALL, 0, 0, 0, HELPERS[helper]))

    def exit(self) -> "Program":
        """Return r0."""
        return self._emit(_Insn(JMP | EXIT))

    def __len__(self) -> int:
        return self._slot()

    def assemble(self) -> bytes:
        """The bytecode: 8 bytes per slot, jumps resolved."""
        out = bytearray()
        slot = 0
        for i in self._insns:
            off = i.off
            if i.label is not None:
                if i.label not in self._labels:
                    raise AsmError(f"undefined label {i.label!r}")
                off = self._labels[i.label] - (slot + 1)
            if not -32768 <= off <= 32767:
                raise AsmError("jump out of range")
            out += struct.pack("<BBhi", i.code, (i.src << 4) | i.dst, off, _s32(i.imm))
            slot += 1
            if i.wide is not None:
                out += struct.pack("<BBhi", 0, 0, 0, _s32(i.wide))
                slot += 1
        return bytes(out)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
