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


# ------------------------------------------------------------------ web config (defects 5, 6)

def _hash(pw: str, cost: int = 4) -> str:
    import bcrypt
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=cost)).decode()


def _basic(user: str, pw: str) -> str:
    import base64
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.mark.parametrize("bad,needle", [
    ("$2b$04$abc", "cut short"), ("$2b$04$" + "a" * 52, "cut short"), ("$2b$03$" + "a" * 53, "outside"),
    ("$2b$04$" + "!" * 53, "alphabet"), ("plain", "does not start with"), ("", "empty"),
])
def test_malformed_bcrypt_hash_is_refused_at_start_naming_user_and_file(cli, tmp_path, bad, needle):
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"basic_auth_users:\n  admin: '{bad}'\n")
    code, out, err = cli("exporter", "--web-config", str(cfg), "--listen", "127.0.0.1:0")
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(cfg) in err and "'admin'" in err and needle in err


def test_a_truncated_hash_would_have_locked_everyone_out():
    """Why the start-up check exists: bcrypt says False, not error, for a cut hash."""
    import bcrypt
    good = _hash("pw")
    assert bcrypt.checkpw(b"pw", good[:-1].encode()) is False
    from portscope.webconfig import bcrypt_problem
    assert bcrypt_problem(good) is None and bcrypt_problem(good[:-1])


def test_unknown_user_costs_one_bcrypt_of_the_configured_cost(monkeypatch):
    import bcrypt
    from portscope.webconfig import Authenticator
    auth = Authenticator({"prom": _hash("secret", 5).encode()})
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(h[:7]) or real(pw, h))
    assert auth.check(_basic("nobody-here", "x")) is False
    assert auth.check(_basic("prom", "wrong")) is False
    assert calls == [b"$2b$05$", b"$2b$05$"]      # the same work for both answers


def test_good_credentials_are_verified_once_even_by_50_concurrent_requests(monkeypatch):
    import threading
    import bcrypt
    from portscope.webconfig import Authenticator
    auth = Authenticator({"prom": _hash("secret", 6).encode()})
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(pw) or real(pw, h))
    results = []
    go = threading.Barrier(50)

    def scrape():
        go.wait()
        results.append(auth.check(_basic("prom", "secret")))

    ts = [threading.Thread(target=scrape) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert results == [True] * 50 and calls == [b"secret"]
    # wrong passwords are never remembered: each pays
    for _ in range(3):
        assert auth.check(_basic("prom", "nope")) is False
    assert calls.count(b"nope") == 3


def test_the_cache_is_bounded_and_keyed_by_the_stored_hash(monkeypatch):
    from portscope.webconfig import Authenticator
    monkeypatch.setattr(Authenticator, "CACHE_SIZE", 4)
    users = {f"u{i}": _hash(f"p{i}").encode() for i in range(6)}
    auth = Authenticator(users)
    for i in range(6):
        assert auth.check(_basic(f"u{i}", f"p{i}"))
    assert len(auth._ok) == 4
    # a changed hash (password rotated, config reloaded) does not match the old entry
    auth.users["u5"] = _hash("new").encode()
    assert auth.check(_basic("u5", "p5")) is False and auth.check(_basic("u5", "new")) is True


def test_every_test_the_guarantees_table_cites_exists():
    """README's 'Guarantees under faults' names its proof; a renamed test must not leave it lying."""
    import re
    here = os.path.dirname(__file__)
    readme = open(os.path.join(os.path.dirname(here), "README.md")).read()
    section = readme.split("## Guarantees under faults")[1].split("\n## ")[0]
    cited = 0
    for row in section.splitlines():
        if not row.startswith("| **"):
            continue
        current = None
        for m in re.finditer(r"`(?:(test_\w+\.py))?(?:::(\w+))?`", row):
            f, name = m.groups()
            if f:
                current = f
                assert os.path.exists(os.path.join(here, f)), f
            if name:
                assert current, row
                assert re.search(rf"^def {name}\(", open(os.path.join(here, current)).read(), re.M), (current, name)
                cited += 1
    assert cited >= 15
