"""Writing a file so that readers (sysctl --system, node_exporter) never see half of it."""
from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory (so the rename is atomic), fsync, rename over `path`,
    then fsync the directory so the rename survives a crash. Readers see the old or the new file."""
    d = os.path.dirname(os.path.abspath(path))
    # the temp name must not match the reader's glob (*.conf, *.prom)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
