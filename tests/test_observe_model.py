"""The BPF assembler's encodings (include/uapi/linux/bpf.h, the kernel's filter.h macros) and
the BTF reader on a blob laid out by hand per Documentation/bpf/btf.rst."""
from __future__ import annotations

import struct

import pytest

from portscope.observe import bpfasm as A
from portscope.observe import btf
from portscope.observe.watch import check_seconds


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def test_encodings_match_the_kernel_macros():
    p = A.Program()
    p.mov(A.R0, imm=0)                       # BPF_MOV64_IMM(R0, 0)
    p.mov(A.R6, A.R1)                        # BPF_MOV64_REG(R6, R1)
    p.ldx(8, A.R3, A.R6, 24)                 # BPF_LDX_MEM(BPF_DW, R3, R6, 24)
    p.st(2, A.FP, -4, 7)                     # BPF_ST_MEM(BPF_H, R10, -4, 7)
    p.atomic_add(8, A.R0, 0, A.R1)           # BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R0, R1, 0)
    p.ld_map_fd(A.R1, 5)                     # BPF_LD_MAP_FD(R1, 5): two slots
    p.call("probe_read_user")                # BPF_EMIT_CALL(BPF_FUNC_probe_read_user)
    p.exit()
    assert p.assemble() == b"".join([
        _insn(0xB7, 0), _insn(0xBF, 6, 1), _insn(0x79, 3, 6, 24), _insn(0x6A, 10, 0, -4, 7),
        _insn(0xDB, 0, 1), _insn(0x18, 1, 1, 0, 5), _insn(0, 0, 0, 0, 0), _insn(0x85, imm=112),
        _insn(0x95)])


def test_jumps_resolve_over_wide_instructions():
    p = A.Program()
    p.jmp("jeq", A.R0, "end", imm=-99)       # over the 2-slot ld_imm64 and one more
    p.ld_imm64(A.R2, 1 << 40)
    p.mov(A.R0, imm=1)
    p.label("end")
    p.exit()
    code = p.assemble()
    assert code[:8] == _insn(0x15, 0, 0, 3, -99)
    assert code[8:24] == _insn(0x18, 2, 0, 0, 0) + _insn(0, imm=1 << 8)
    with pytest.raises(A.AsmError):
        A.Program().ja("nowhere").assemble()
    with pytest.raises(A.AsmError):
        A.Program().label("x").label("x")


def _blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_btf_member_offsets_through_anonymous_unions_and_typedefs():
    strs = b"\0int\0inner\0outer\0a\0b\0c\0t\0"
    off = {n: strs.index(b"\0" + n.encode() + b"\0") + 1 for n in ("int", "inner", "outer", "a", "b", "c", "t")}

    def t(name, kind, vlen, size_type, kflag=0):
        return struct.pack("<III", off.get(name, 0), (kflag << 31) | (kind << 24) | vlen, size_type)

    types = b"".join([
        t("int", btf.INT, 0, 4) + struct.pack("<I", 32),                          # 1
        t("inner", btf.STRUCT, 2, 8) + struct.pack("<III", off["a"], 1, 0) + struct.pack("<III", off["b"], 1, 32),  # 2
        t("", btf.UNION, 1, 8) + struct.pack("<III", 0, 2, 0),                   # 3 anonymous union {struct inner}
        t("t", btf.TYPEDEF, 0, 2),                                                 # 4 typedef struct inner t
        t("outer", btf.STRUCT, 2, 24, kflag=1) + struct.pack("<III", 0, 3, 64)
        + struct.pack("<III", off["c"], 4, 128),                                  # 5 {long pad; union{..}; t c;}
    ])
    b = btf.BTF(_blob(types, strs))
    assert b.offset("outer.b") == 12              # 8 (union) + 4 (b in inner), found through the union
    assert b.offset("outer.c.b") == 20            # through the typedef
    with pytest.raises(btf.BTFError):
        b.offset("outer.z")
    with pytest.raises(btf.BTFError):
        b.offset("nosuch.a")
    with pytest.raises(btf.BTFError):
        btf.BTF(b"\0" * 24)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "1e9", "86401", "x", ""])
def test_window_bounds(bad):
    from portscope.errors import BadInput
    with pytest.raises(BadInput):
        check_seconds(bad)


def test_window_ok():
    assert check_seconds("0.5") == 0.5 and check_seconds(86400) == 86400.0
