"""Just enough of a BTF reader to find struct member offsets in the running kernel.

/sys/kernel/btf/vmlinux describes every kernel type (include/uapi/linux/btf.h). The
counting programs follow task->nsproxy->net_ns->ns.inum with bpf_probe_read_kernel; the
offsets differ between kernel builds, so they are read here at run time instead of from
kernel headers (which a fleet host does not have).
"""
from __future__ import annotations

import struct

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
# bytes of kind-specific data after the 12-byte btf_type: (fixed, per vlen item)
_EXTRA = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
          FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), DECL_TAG: (4, 0), ENUM64: (0, 12)}
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BTFError(Exception):
    pass


class BTF:
    """Types of one BTF blob, indexed by id; struct lookups by name."""

    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != MAGIC:
            raise BTFError("not a BTF blob (bad magic)")
        self._strs = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._data = data
        # one entry per type id (id 0 is void): (kind, name_off, size_or_type, kind_flag,
        # vlen, position of the kind-specific data); members are decoded only when asked
        self.types: list[tuple | None] = [None]
        self._by_name: dict[int, list[int]] = {}
        unpack, types, append = struct.unpack_from, self.types, self.types.append
        extra = [_EXTRA.get(k, (0, 0)) for k in range(32)]
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_type = unpack("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per = extra[kind]
            if kind in (STRUCT, UNION) and name_off:
                self._by_name.setdefault(name_off, []).append(len(types))
            append((kind, name_off, size_type, info >> 31, vlen, pos + 12))
            pos += 12 + fixed + per * vlen

    def name(self, off: int) -> str:
        end = self._strs.find(b"\0", off)
        return self._strs[off:end].decode()

    def struct_id(self, name: str) -> int:
        off = self._strs.find(b"\0" + name.encode() + b"\0")
        ids = [] if off < 0 else [i for i in self._by_name.get(off + 1, ()) if self.types[i][0] == STRUCT]
        if not ids:
            raise BTFError(f"struct {name} not in the kernel's BTF")
        return ids[0]

    def resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        while self.types[tid] is not None and self.types[tid][0] in _QUALIFIERS:
            tid = self.types[tid][2]
        return tid

    def member(self, tid: int, name: str) -> tuple[int, int] | None:
        """(byte offset, type id) of member `name` of struct/union `tid`, looking inside
        anonymous struct/union members as C does."""
        kind, _, _, kflag, vlen, pos = self.types[self.resolve(tid)]
        if kind not in (STRUCT, UNION):
            return None
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", self._data, pos + 12 * i)
            bits = m_off & 0xFFFFFF if kflag else m_off
            if m_name and self.name(m_name) == name:
                if bits % 8:
                    raise BTFError(f"member {name} is a bitfield")
                return bits // 8, m_type
            if not m_name:
                inner = self.member(m_type, name)
                if inner is not None:
                    return bits // 8 + inner[0], inner[1]
        return None

    def offset(self, path: str) -> int:
        """Byte offset of a dotted member path within its first struct: 'net.ns.inum'."""
        first, *names = path.split(".")
        tid, total = self.struct_id(first), 0
        for n in names:
            found = self.member(tid, n)
            if found is None:
                raise BTFError(f"no member {n!r} on the way to {path}")
            total += found[0]
            tid = found[1]
        return total


def load(path: str = VMLINUX) -> BTF:
    """The running kernel's BTF; BTFError (or OSError) when it is missing or unreadable."""
    with open(path, "rb") as f:
        return BTF(f.read())
