"""Writing a file so that readers (sysctl --system, node_exporter) never see half of it.

Every failure is one portscope error naming the file and the kernel's reason, with the exit
code that fits the reason (errors.py): a full disk or read-only file system is not "bad
input", and "permission denied" as root is not "run as root".
"""
from __future__ import annotations

import errno
import os
import tempfile

from .errors import BadInput, NotPermitted, PortscopeError, WriteFailed

_STORAGE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EIO: "input/output error",
            errno.EFBIG: "file too large"}


def write_error(path: str, e: OSError, doing: str = "write") -> PortscopeError:
    """The portscope error for an OSError met while writing `path`."""
    why = e.strerror or str(e)
    if e.errno in _STORAGE:
        return WriteFailed(f"cannot {doing} {path}: {_STORAGE[e.errno]} ({errno.errorcode[e.errno]})")
    if e.errno in (errno.EACCES, errno.EPERM):
        if os.geteuid() != 0:
            return NotPermitted(f"cannot {doing} {path}: permission denied (run as root)")
        return NotPermitted(f"cannot {doing} {path}: permission denied even as root "
                            f"({errno.errorcode[e.errno]}: an immutable file, a security module or "
                            f"a read-only bind mount?)")
    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP):
        return BadInput(f"cannot {doing} {path}: {why}")
    name = errno.errorcode.get(e.errno or 0, "error")
    return WriteFailed(f"cannot {doing} {path}: {why} ({name})")


def check_writable_dir(d: str, what: str = "write in") -> None:
    """Refuse early, with the real reason, when files cannot be created in directory `d`."""
    if not os.path.isdir(d):
        raise BadInput(f"cannot {what} {d}: not a directory")
    if os.access(d, os.W_OK):
        return
    try:
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            raise write_error(d, OSError(errno.EROFS, os.strerror(errno.EROFS)), what)
    except OSError:
        pass
    raise write_error(d, OSError(errno.EACCES, os.strerror(errno.EACCES)), what)


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory (so the rename is atomic), fsync, rename over `path`,
    then fsync the directory so the rename survives a crash. Readers see the old or the new file.
    Failures raise a PortscopeError naming `path` (write_error); the temp file never stays."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        # the temp name must not match the reader's glob (*.conf, *.prom)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.isdir(d):
            # the directory is there but takes no new files (/proc, /sys): not the user's typo
            raise WriteFailed(f"cannot write {path}: {d} does not allow new files (is it /proc or /sys?)") from e
        raise write_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
