"""Issue 12: the shared mechanisms checked on their own (error mapping of the file writer,
the web config's hash checks, the lab's liveness lock)."""
from __future__ import annotations

import errno
import os

import pytest

from portscope import fsutil
from portscope.errors import BadInput, NotPermitted, WriteFailed


@pytest.mark.parametrize("code,cls,needle", [
    (errno.ENOSPC, WriteFailed, "no space left"), (errno.EROFS, WriteFailed, "read-only file system"),
    (errno.EDQUOT, WriteFailed, "quota"), (errno.EIO, WriteFailed, "input/output"),
    (errno.ENOENT, BadInput, "No such file"),
])
def test_write_errors_name_the_file_and_the_cause(monkeypatch, tmp_path, code, cls, needle):
    target = tmp_path / "x.conf"
    target.write_text("old\n")

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(cls) as ei:
        fsutil.atomic_write(str(target), "new\n")
    assert str(target) in str(ei.value) and needle in str(ei.value)
    assert target.read_text() == "old\n"                      # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.conf"]  # and no temp file is left


def test_permission_denied_as_root_does_not_say_run_as_root(monkeypatch):
    e = OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    err = fsutil.write_error("/etc/sysctl.d/90-portscope.conf", e)
    assert isinstance(err, NotPermitted) and "run as root" not in str(err) and "even as root" in str(err)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    err = fsutil.write_error("/etc/sysctl.d/90-portscope.conf", e)
    assert isinstance(err, NotPermitted) and "run as root" in str(err)


def test_exit_code_5_is_documented():
    import portscope.cli as c
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")).read()
    assert "| 5 |" in readme and "5 could not write" in " ".join(c.cli.help.split())
