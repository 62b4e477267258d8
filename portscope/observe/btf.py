"""Just enough of a BTF reader to find struct member offsets in the running kernel.

/sys/kernel/btf/vmlinux describes every kernel type (include/uapi/linux/btf.h). The
counting programs follow task->nsproxy->net_ns->ns.inum with bpf_probe_read_kernel; the
offsets differ between kernel builds, so they are read here at run time instead of from
kernel headers (which a fleet host does not have).
"""
from __future__ import annotations

import bisect
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
    """A BTF blob or a type path portscope cannot use."""
    pass


class BTF:
    """Types of one BTF blob, indexed by id; struct lookups by name.

    The blob is in the host's byte order and every record is a multiple of 4 bytes, so the
    type section is read as one list of native 32-bit words and only the start of each
    type is recorded (about 0.1-0.3 s for the 5 MB of a distribution kernel); members are
    decoded when asked for."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("=HBBIIIII", data)
        if magic != MAGIC:
            raise BTFError("not a BTF blob (bad magic or byte order)")
        base = hdr_len + type_off
        if type_len % 4 or base + type_len > len(data):
            raise BTFError("BTF type section is truncated")
        self._strs = data[hdr_len + str_off: hdr_len + str_off + str_len]
        words = memoryview(data)[base:base + type_len].cast("I").tolist()
        self._words = words
        fixed = [(12 + _EXTRA.get(k, (0, 0))[0]) // 4 for k in range(32)]
        per = [_EXTRA.get(k, (0, 0))[1] // 4 for k in range(32)]
        starts = [0]                     # word index of each type id (id 0 is void)
        structs: dict[int, list[int]] = {}
        add = starts.append
        i, n = 0, len(words)
        while i < n:
            info = words[i + 1]
            k = (info >> 24) & 0x1F
            if k == STRUCT:
                structs.setdefault(words[i], []).append(len(starts))
            add(i)
            i += fixed[k] + per[k] * (info & 0xFFFF)
        self._starts = starts
        self._by_name = structs

    def _type(self, tid: int) -> tuple:
        """(kind, name_off, size_or_type, kind_flag, vlen, word index of the members)."""
        if tid <= 0 or tid >= len(self._starts):
            raise BTFError(f"type id {tid} out of range")
        i = self._starts[tid]
        info = self._words[i + 1]
        return (info >> 24) & 0x1F, self._words[i], self._words[i + 2], info >> 31, info & 0xFFFF, i + 3

    def name(self, off: int) -> str:
        """The string at `off` of the string section."""
        end = self._strs.find(b"\0", off)
        return self._strs[off:end].decode()

    def struct_id(self, name: str) -> int:
        """Type id of `struct name`; BTFError when the kernel has none."""
        off = self._strs.find(b"\0" + name.encode() + b"\0")
        ids = [] if off < 0 else self._by_name.get(off + 1, [])
        if not ids:
            raise BTFError(f"struct {name} not in the kernel's BTF")
        return ids[0]

    def func_id(self, name: str) -> int:
        """Type id of the BTF FUNC `name` (what an iterator or fentry program attaches to);
        BTFError when the kernel has none. The type words are searched in C (list.index)
        for the name's string offset; only the hits are checked for being a FUNC's start."""
        off = self._strs.find(b"\0" + name.encode() + b"\0")
        if off >= 0:
            w, starts, i = self._words, self._starts, -1
            want = off + 1
            while True:
                try:
                    i = w.index(want, i + 1)
                except ValueError:
                    break
                k = bisect.bisect_left(starts, i)
                if k < len(starts) and starts[k] == i and (w[i + 1] >> 24) & 0x1F == FUNC:
                    return k
        raise BTFError(f"function {name} not in the kernel's BTF")

    def resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        while tid and self._type(tid)[0] in _QUALIFIERS:
            tid = self._type(tid)[2]
        return tid

    def member(self, tid: int, name: str) -> tuple[int, int] | None:
        """(byte offset, type id) of member `name` of struct/union `tid`, looking inside
        anonymous struct/union members as C does."""
        kind, _, _, kflag, vlen, pos = self._type(self.resolve(tid))
        if kind not in (STRUCT, UNION):
            return None
        w = self._words
        for i in range(vlen):
            m_name, m_type, m_off = w[pos + 3 * i], w[pos + 3 * i + 1], w[pos + 3 * i + 2]
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
