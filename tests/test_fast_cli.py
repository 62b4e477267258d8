"""The click-free front end (portscope.front.fast) against the click CLI it stands in for:
every fast argv shape, run as a whole process both ways (fast, and PORTSCOPE_NO_FAST=1),
prints the same stdout and stderr bytes and exits with the same code, in a namespace with
known sockets; the stored --help text is click's own rendering; any other argv goes to click.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ENTRY, stop_process

from portscope.front import fast

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a listener, three established connections and a bound UDP socket, open until killed
HOLD = r"""
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(16)
keep = [l]
for _ in range(3):
    c = socket.create_connection(l.getsockname()); s, _ = l.accept(); keep += [c, s]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); keep.append(u)
print("ready", flush=True)
print(l.getsockname()[1], flush=True)
time.sleep(300)
"""

FAST_SHAPES = [[], ["--help"], ["-h"], ["-V"], ["--version"], ["range"], ["range", "--json"],
               ["port", "80"], ["port", "80", "--json"], ["pressure"], ["pressure", "--json"],
               ["conns"], ["conns", "--json"], ["conns", "--csv"], ["conns", "--count"]]
ERROR_SHAPES = [["port", "99999"], ["port", "99999", "--json"], ["port", "65536"]]


def _run(argv: list[str], *, slow: bool, prefix: tuple = (), env: dict | None = None, entry=ENTRY):
    e = dict(os.environ if env is None else env)
    e.pop("PORTSCOPE_NO_FAST", None)
    if slow:
        e["PORTSCOPE_NO_FAST"] = "1"
    r = subprocess.run([*prefix, *entry, *argv], capture_output=True, env=e, timeout=120)
    return r.returncode, r.stdout, r.stderr


def _listed(argv: list[str], out: bytes) -> set:
    """The (inode, names) of every namespace a `namespaces` output lists. The kernel hands a
    freed namespace's inode to the next new one, so churn can keep the inode set and change
    only the name under /run/netns."""
    if "--json" in argv:
        return {(n["inode"], tuple(n["names"])) for n in json.loads(out)["namespaces"]}
    return {tuple(line.split()[:2]) for line in out.decode().splitlines() if line[:1].isdigit()}


def _alike(argv: list[str], **kw) -> tuple:
    """Both ways, equal; `namespaces` lists the host's bind mounts too, which other tests add and
    remove meanwhile: a differing inode set is retried, never a differing rendering."""
    for _ in range(5):
        fast_r, slow_r = _run(argv, slow=False, **kw), _run(argv, slow=True, **kw)
        if fast_r == slow_r or argv[0] != "namespaces":
            break
        # only churn may differ, and it shows in the two runs' own lists (a fresh pair of
        # reads taken afterwards may well agree: the churn is over by then)
        assert _listed(argv, fast_r[1]) != _listed(argv, slow_r[1]), (argv, fast_r, slow_r)
    assert fast_r == slow_r, argv
    return fast_r


def test_shapes_are_exact():
    """Only the listed words run fast; any other option or shape is click's."""
    for argv in FAST_SHAPES + ERROR_SHAPES + [["namespaces"], ["namespaces", "--json"]]:
        assert fast.shape(argv) is not None or fast.terminal_columns() < fast.HELP_COLUMNS, argv
    for argv in (["--json", "range"], ["range", "--json", "--json"], ["range", "set", "1", "2"],
                 ["port", "-1"], ["port", "+80"], ["port", "http"], ["port", "80", "--proto", "tcp"],
                 ["port", "٨٠"], ["port", "--json", "80"], ["conns", "--json", "--count"],
                 ["conns", "--count", "--json"], ["conns", "-p"], ["pressure", "--check"],
                 ["namespaces", "-v"], ["-v", "range"], ["range", "-h"], ["--help", "range"],
                 ["report"], ["nosuch"]):
        assert fast.shape(argv) is None, argv


@pytest.mark.netns
def test_every_fast_shape_prints_what_click_prints(netns):
    p = netns.start(HOLD)
    try:
        port = p.stdout.readline().strip()
        prefix = ("ip", "netns", "exec", netns.name)
        env = dict(os.environ, COLUMNS="100")
        shapes = FAST_SHAPES + ERROR_SHAPES + [["port", port], ["port", port, "--json"], ["port", "0000080"]]
        for argv in shapes:
            fast_r = _run(argv, slow=False, prefix=prefix, env=env)
            slow_r = _run(argv, slow=True, prefix=prefix, env=env)
            assert fast_r == slow_r, argv
        # the namespace's sockets are in it (not two empty answers)
        code, out, _ = _run(["conns", "--json"], slow=False, prefix=prefix, env=env)
        rows = json.loads(out)["sockets"]
        assert code == 0 and sum(r["state"] == "ESTABLISHED" for r in rows) == 6
        assert len(netns.ss("-tan", "state", "established")) == 6
        code, out, _ = _run(["port", port], slow=False, prefix=prefix, env=env)
        assert f"LISTEN      127.0.0.1:{port}" in out.decode()
        for argv in ERROR_SHAPES:
            code, out, err = _run(argv, slow=False, prefix=prefix, env=env)
            assert code == 2 and out == b"" and err.startswith(b"portscope: error: ") and err.count(b"\n") == 1
    finally:
        stop_process(p)


# a private PID namespace with its own /proc: the command is pid 1 (so two runs list the same
# pids) beside one root process (pid 2) that an unprivileged run may not read
ALONE = ("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", 'sleep 60 & exec "$@"', "sh")


@pytest.mark.root
def test_namespaces_fast_and_click_alike():
    import shutil
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for a private PID namespace")
    for argv in (["namespaces"], ["namespaces", "--json"]):
        assert _alike(argv, prefix=ALONE)[0] == 0
    doc = json.loads(_alike(["namespaces", "--json"], prefix=ALONE)[1])
    ours = [n for n in doc["namespaces"] if n["current"]]
    assert len(ours) == 1 and ours[0]["pids"] == [1, 2] and ours[0]["process_count"] == 2


@pytest.mark.netns
def test_fast_shapes_unprivileged_print_what_click_prints(netns, nobody_portscope):
    """As uid 65534 (no capabilities): the other user's process is counted unreadable and said
    on stderr, the same line both ways; every other shape alike too."""
    from conftest import NOBODY_IDS
    p = netns.start(HOLD)
    try:
        p.stdout.readline()
        prefix = ("ip", "netns", "exec", netns.name, *ALONE, *NOBODY_IDS)
        env = dict(os.environ, COLUMNS="100")
        for argv in (["namespaces"], ["range"], ["port", "80"], ["port", "99999"], ["pressure", "--json"],
                     ["conns"], ["conns", "--count"]):
            _alike(argv, prefix=prefix, env=env, entry=nobody_portscope)
        code, _, err = _alike(["namespaces"], prefix=prefix, env=env, entry=nobody_portscope)
        assert code == 0 and b"1 process(es) could not be read (permission denied)" in err
        doc = json.loads(_alike(["namespaces", "--json"], prefix=prefix, env=env, entry=nobody_portscope)[1])
        assert doc["unreadable_processes"] == 1
    finally:
        stop_process(p)


def test_stored_help_is_clicks_rendering():
    """data/help.txt is what click prints for `--help` at its default layout (80 columns or
    more); regenerate it with: PORTSCOPE_NO_FAST=1 COLUMNS=100 portscope --help > portscope/data/help.txt"""
    from click.testing import CliRunner

    from portscope.cli import cli
    # click's default width is min(columns, 80) - 2: 78 from 80 columns on
    res = CliRunner().invoke(cli, ["--help"], prog_name="portscope", terminal_width=78)
    with open(fast.HELP_FILE, encoding="utf-8") as f:
        assert f.read() == res.output
    for cols in ("80", "200"):
        env = dict(os.environ, COLUMNS=cols)
        assert _run(["--help"], slow=False, env=env) == _run(["--help"], slow=True, env=env)
    # a narrower terminal gets click's narrower layout (the fast path steps aside)
    env = dict(os.environ, COLUMNS="60")
    narrow = _run(["--help"], slow=False, env=env)
    assert narrow == _run(["--help"], slow=True, env=env) and narrow[1] != res.output.encode()


def _modules_after(argv: list[str], env_extra: dict | None = None) -> set[str]:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('MODS ' + ' '.join(sorted(sys.modules)) + '\\n'))\n"
            "from portscope.front.fast import main\n"
            "main(sys.argv[1:])\n")
    env = dict(os.environ, COLUMNS="100", **(env_extra or {}))
    env.pop("PORTSCOPE_NO_FAST", None) if not env_extra else None
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
                       cwd=CHECKOUT, timeout=60)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("MODS ")][-1]
    return set(line.split()[1:])


@pytest.mark.live
def test_fast_shapes_never_import_click():
    # what the interpreter loads by itself (site; an editable install's finder brings re) is no cost of ours
    r = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"], capture_output=True,
                       text=True, cwd=CHECKOUT)
    mods = _modules_after(["--help"]) - set(r.stdout.split())
    assert not mods & {"click", "typing", "dataclasses", "re", "json"}, mods
    for argv in (["range"], ["port", "80", "--json"], ["namespaces"], ["conns", "--count"]):
        assert "click" not in _modules_after(argv), argv
    # `range` and `port N` too keep the heavy modules off: value types without dataclasses,
    # only this OS's host backend, no NAT rule readers where the kernel has no NAT (natprobe)
    from portscope import natprobe
    heavy = {"click", "typing", "dataclasses", "inspect", "re", "json", "gzip", "subprocess", "ipaddress",
             "portscope.host.bsd", "portscope.host.windows", "portscope.nat"}
    for argv in (["range"], ["range", "--json"], ["port", "80"], ["port", "80", "--json"]):
        extra = _modules_after(argv) - set(r.stdout.split())
        if argv[0] == "port" and natprobe.may_hold_ports():      # NAT here: its readers run, as they must
            assert not extra & {"click", "portscope.host.bsd", "portscope.host.windows"}, (argv, extra)
        else:
            assert not extra & heavy, (argv, extra & heavy)
    # `pressure` and `pressure --json` too: its result types are Frozen, forecast's ipaddress
    # loads only for a forecast, and the JSON goes through the C encoder alone
    for argv in (["pressure"], ["pressure", "--json"]):
        extra = _modules_after(argv) - set(r.stdout.split())
        assert "portscope.pressure" in extra and not extra & heavy, (argv, extra & heavy)
    # what the console script pays beyond the interpreter (pip >= 25's wrapper imports only sys):
    # no contextlib (with collections and functools), importlib, math or the namespace walk; and a
    # free port is answered without the socket table (portprobe)
    from portscope import portprobe
    lean = {"contextlib", "collections", "functools", "importlib", "warnings", "math", "struct", "_struct",
            "portscope.namespaces", "portscope.containers"}
    for argv in (["range"], ["port", "80"]):
        extra = _modules_after(argv) - set(r.stdout.split())
        if argv[0] == "port" and natprobe.may_hold_ports():
            continue
        assert not extra & lean, (argv, extra & lean)
        if argv[0] == "port" and portprobe.any_bound(80) is False:
            assert not {m for m in extra if m.startswith("portscope.sockets")}, (argv, extra)
    # anything else, and the escape hatch, is click's
    assert "click" in _modules_after(["--json", "range"])
    assert "click" in _modules_after(["range"], {"PORTSCOPE_NO_FAST": "1"})
