"""`portscope top`: trend bookkeeping, JSON Lines, and the live view in a real terminal (tmux)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from types import SimpleNamespace

import pytest

from conftest import ENTRY, Netns
from portscope.trend import SPARKS, Trend, sparkline


# runs inside the namespace: listeners on 127.0.0.2/3:80 that never accept (the accept queue
# holds the server side), then "DST N" on stdin opens N more client connections to DST:80
HOLDER = r"""
import socket, sys
ls = []
for d in ("127.0.0.2", "127.0.0.3"):
    s = socket.socket(); s.bind((d, 80)); s.listen(4096); ls.append(s)
held = []
print("ready", flush=True)
for line in sys.stdin:
    dst, n = line.split()
    for _ in range(int(n)):
        c = socket.socket(); c.connect((dst, 80)); held.append(c)
    print("ok", len(held), flush=True)
"""


class Holder:
    def __init__(self, ns):
        ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
        self.ns = ns
        self.p = ns.start(HOLDER, stdin=subprocess.PIPE)

    def open(self, dst: str, n: int) -> int:
        self.p.stdin.write(f"{dst} {n}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().split()
        assert line and line[0] == "ok", line
        return int(line[1])

    def close(self):
        self.p.kill()
        self.p.wait(timeout=10)


@pytest.fixture
def holder(netns):
    h = Holder(netns)
    try:
        yield h
    finally:
        h.close()


def _remove_socket(name: str) -> None:
    """kill-server leaves the socket file behind: remove ours."""
    base = os.environ.get("TMUX_TMPDIR", "/tmp")
    try:
        os.unlink(os.path.join(base, f"tmux-{os.getuid()}", name))
    except FileNotFoundError:
        pass


def _exit_line(done, limit: float = 10.0) -> str:
    """The `echo EXIT=$? > FILE` line the tmux shell writes after top ends ("" if it never
    came): the shell creates the file before it writes the line, so wait for the line."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        text = done.read_text().strip() if done.exists() else ""
        if text:
            return text
        time.sleep(0.1)
    return ""


def ss_clients(ns: str, dst: str) -> int:
    return sum(1 for f in Netns(ns).ss("-tn") if f[:1] == ["ESTAB"] and f[4] == dst)


# ------------------------------------------------------------------ pure

def test_sparkline_is_scaled_to_capacity():
    assert sparkline([0, 50, 100], 100) == SPARKS[0] + SPARKS[4] + SPARKS[-1]
    assert sparkline([100, 200], 100) == SPARKS[-1] * 2          # over capacity stays full
    assert sparkline([3], 0) == SPARKS[-1]                        # no capacity: exhausted


def test_trend_deltas_rates_and_forgetting():
    d = lambda key, n: SimpleNamespace(key=key, in_use=n)  # noqa: E731
    t = Trend(keep=3)
    p = t.update([d("a", 10)], now=0.0)
    assert p["a"].delta is None and p["a"].rate_per_s is None and p["a"].history == (10,)
    p = t.update([d("a", 14), d("b", 1)], now=2.0)
    assert p["a"].delta == 4 and p["a"].rate_per_s == 2.0 and p["b"].delta is None
    p = t.update([d("a", 20), d("b", 1)], now=4.0)
    assert p["a"].history == (10, 14, 20) and p["a"].rate_per_s == 2.5 and p["b"].delta == 0
    p = t.update([d("a", 20)], now=6.0)                           # keep=3: oldest dropped
    assert p["a"].history == (14, 20, 20) and p["a"].rate_per_s == 1.5 and "b" not in p
    p = t.update([d("a", 20), d("b", 5)], now=8.0)                # b came back: new again
    assert p["b"].delta is None


def test_bad_options_exit_2(cli):
    for args in (["--interval", "0"], ["--top", "0"], ["--iterations", "0"],
                 ["--netns", "no-such-ns-" + uuid.uuid4().hex[:6], "-n", "1"]):
        code, out, err = cli("top", *args)
        assert code == 2, (args, out, err)
        assert err.startswith("portscope: error: ") and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ live, in a namespace

def test_trend_follows_the_kernel(netns, holder):
    from portscope.datapath import measure as gather
    t = Trend()
    holder.open("127.0.0.2", 10)
    res = gather(netns.name)
    p = t.update(res.destinations)
    d = next(x for x in res.destinations if x.dst == "127.0.0.2")
    assert d.in_use == 10 == ss_clients(netns.name, "127.0.0.2:80")
    holder.open("127.0.0.2", 7)
    holder.open("127.0.0.3", 3)
    res = gather(netns.name)
    p = t.update(res.destinations)
    by = {x.dst: x for x in res.destinations}
    assert by["127.0.0.2"].in_use == 17 == ss_clients(netns.name, "127.0.0.2:80")
    assert p[by["127.0.0.2"].key].delta == 7 and p[by["127.0.0.2"].key].history == (10, 17)
    assert p[by["127.0.0.3"].key].delta is None and by["127.0.0.3"].in_use == 3


def test_json_lines_one_per_refresh(netns, holder, cli):
    holder.open("127.0.0.2", 12)
    code, out, err = cli("top", "--netns", netns.name, "-n", "3", "--interval", "0.1", "--json")
    assert code == 0, err
    docs = [json.loads(ln) for ln in out.splitlines()]
    assert [d["iteration"] for d in docs] == [1, 2, 3]
    dest = [x for x in docs[-1]["destinations"] if x["dst"] == "127.0.0.2"][0]
    assert dest["in_use"] == 12 == ss_clients(netns.name, "127.0.0.2:80")
    assert dest["capacity"] == 100 and dest["history"] == [12, 12, 12] and dest["delta"] == 0
    assert docs[0]["destinations"][0]["delta"] is None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/test.sh installs it)")
def test_in_a_real_terminal_shows_destinations_trend_and_quits_on_q(netns, holder, tmp_path):
    holder.open("127.0.0.2", 20)
    holder.open("127.0.0.3", 5)
    sock = f"pstop-{uuid.uuid4().hex[:8]}"          # our own tmux server, nobody else's
    done = tmp_path / "exit"
    cmd = " ".join(ENTRY) + f" top --netns {netns.name} --interval 0.5; echo EXIT=$? > {done}"
    tmux = ["tmux", "-L", sock]
    env = {**os.environ, "TERM": "xterm-256color"}

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True,
                              text=True, env=env).stdout

    def wait_for(pred, limit=15.0) -> str:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            text = pane()
            if pred(text):
                return text
            time.sleep(0.05)   # well inside one 0.5 s frame: no frame goes unseen
        raise AssertionError("never seen; last pane:\n" + pane())

    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                        "sh", "-c", cmd], check=True, env=env, cwd=os.getcwd())
        text = wait_for(lambda s: "127.0.0.1 -> 127.0.0.2:80" in s and "#2" in s)
        row = next(ln for ln in text.splitlines() if "127.0.0.2:80" in ln)
        cells = row.split()
        assert cells[0] == "tcp" and cells[4] == "20" and cells[5] == "100" and cells[6] == "20%"
        assert any(ch in row for ch in SPARKS)
        assert "127.0.0.1 -> 127.0.0.3:80" in text

        # more connections: a refresh shows a positive change, then 50, and the sparkline climbs
        # (a refresh may land while the 30 are being opened, so the change can come in two parts)
        holder.open("127.0.0.2", 30)
        deltas = []

        def reached_50(s):
            row = next((ln.split() for ln in s.splitlines() if "127.0.0.2:80" in ln), None)
            if row:
                deltas.append((int(row[4]), row[8]))
            return bool(row) and row[4] == "50"

        text = wait_for(reached_50)
        row = next(ln for ln in text.splitlines() if "127.0.0.2:80" in ln)
        assert any(n > 20 and d.startswith("+") for n, d in deltas), deltas
        assert float(row.split()[9]) > 0             # RATE/s over the kept history
        trend = row.split()[-1]
        assert SPARKS.index(trend[-1]) > SPARKS.index(trend[0])

        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, env=env)
        assert _exit_line(done) == "EXIT=0", "q did not end portscope top; pane:\n" + pane()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, env=env)
        _remove_socket(sock)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/test.sh installs it)")
def test_ctrl_c_in_a_real_terminal_quits_cleanly(netns, holder, tmp_path):
    holder.open("127.0.0.3", 4)
    sock = f"pstop-{uuid.uuid4().hex[:8]}"
    done, err = tmp_path / "exit", tmp_path / "stderr"
    # the terminal sends SIGINT to the whole foreground group: the wrapping shell must survive
    # it (a trap, not an ignore, which the child would inherit) to record top's exit code
    cmd = ("trap true INT; " + " ".join(ENTRY)
           + f" top --netns {netns.name} --interval 0.3 2> {err}; echo EXIT=$? > {done}")
    tmux = ["tmux", "-L", sock]
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "150", "-y", "30",
                        "bash", "-c", cmd], check=True)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            text = subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True,
                                  text=True).stdout
            if "127.0.0.3:80" in text:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("top never showed the destination")
        subprocess.run([*tmux, "send-keys", "-t", "top", "C-c"], check=True)
        assert _exit_line(done) == "EXIT=130"      # README: 130 interrupted
        assert err.read_text() == "portscope: interrupted\n"  # one line, no traceback
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        _remove_socket(sock)


def test_piped_output_prints_every_refresh(netns, holder, cli):
    holder.open("127.0.0.3", 9)
    code, out, err = cli("top", "--netns", netns.name, "-n", "2", "--interval", "0.1")
    assert code == 0, err
    assert "#1/2" in out and "#2/2" in out
    rows = [ln.split() for ln in out.splitlines() if "127.0.0.1 -> 127.0.0.3:80" in ln]
    assert len(rows) == 2
    assert [r[4:7] for r in rows] == [["9", "100", "9%"]] * 2
    assert rows[0][8] == "new" and rows[1][8] == "0"


def test_json_remedies_target_the_namespace(netns, driver, cli):
    """top shows the same findings as pressure: their remedies change the namespace, not the host."""
    from test_findings_kernel import assert_remedy_targets
    drive = driver
    drive(op="listen", port=45000)
    code, out, err = cli("top", "--netns", netns.name, "-n", "1", "--json")
    assert code == 0, err
    doc = json.loads(out.splitlines()[0])
    assert "listener-in-range" in {f["id"] for f in doc["findings"]}
    for f in doc["findings"]:
        assert_remedy_targets(f["remedy"], netns.name)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/test.sh installs it)")
@pytest.mark.parametrize("cols", [44, 64])
def test_a_narrow_terminal_drops_columns_from_the_right(netns, holder, cols):
    """Issue 12: at 60 columns rich cut PROTO to "PR…" and CAP to "28…"; now whole columns
    go, from the right, and what is shown is whole."""
    holder.open("127.0.0.2", 7)
    sock = f"pstop-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    env = {**os.environ, "TERM": "xterm-256color"}
    cmd = " ".join(ENTRY) + f" top --netns {netns.name} --interval 0.3"
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", str(cols), "-y", "30", "sh", "-c", cmd],
                       check=True, env=env)
        end, text = time.monotonic() + 30, ""
        while time.monotonic() < end and "127.0.0.2:80" not in text:
            text = subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True,
                                  text=True, env=env).stdout
            time.sleep(0.1)
        head = next(ln for ln in text.splitlines() if ln.startswith("PROTO"))
        row = next(ln for ln in text.splitlines() if "127.0.0.2:80" in ln)
        assert "…" not in head + row and len(row.rstrip()) <= cols
        assert head.split()[:5] == ["PROTO", "SOURCE", "->", "DESTINATION", "IN"]
        assert row.split()[:5] == ["tcp", "127.0.0.1", "->", "127.0.0.2:80", "7"]
        if cols >= 64:
            assert row.split()[5] == "100" and "CAP" in head       # capacity shown whole
        else:
            assert "TREND" not in head                             # dropped, not squeezed
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, env=env)
        _remove_socket(sock)
