"""`portscope quiz` through the real console script: the JSON contract, seeds, bad
input, end of input and Ctrl-C, and a full round in a real terminal (tmux)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import PORTSCOPE
from portscope import quiz
from portscope.quiz import live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANK = quiz.load()
BANK_ANSWERS = {q.id: q.answer for q in BANK.questions}


def run(*args: str, input: str | None = None, stdin=None, timeout: float = 30) -> subprocess.CompletedProcess:
    kw = {"input": input} if input is not None else {"stdin": stdin if stdin is not None else subprocess.DEVNULL}
    return subprocess.run([PORTSCOPE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def run_json(*args: str, **kw) -> dict:
    r = run(*args, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def key(seed: int, count: int, *extra: str) -> list[dict]:
    """The questions a seed picks, with their right answers (via --answers, any answers)."""
    return run_json("quiz", "--seed", str(seed), "--count", str(count), "--answers",
                    ",".join("1" * count), "--json", *extra)["questions"]


def test_answers_json_contract():
    qs = key(7, 5)
    assert len(qs) == 5
    # right on 1st and 3rd, wrong elsewhere
    answers = [q["answer"] if i in (0, 2) else q["answer"] % len(q["choices"]) + 1 for i, q in enumerate(qs)]
    out = run_json("quiz", "--seed", "7", "--count", "5", "--answers", ",".join(map(str, answers)), "--json")
    assert set(out) >= {"score", "total", "questions"}
    assert out["score"] == 2 and out["total"] == 5 and out["answered"] == 5 and out["seed"] == 7
    assert [q["id"] for q in out["questions"]] == [q["id"] for q in qs]
    for q, a in zip(out["questions"], answers):
        assert set(q) >= {"id", "topic", "correct", "given", "answer", "choices", "explanation"}
        assert isinstance(q["correct"], bool) and q["given"] == a
        assert q["correct"] == (a == q["answer"])
        if not q["live"]:   # the graded answer is the bank's
            assert q["answer"] == BANK_ANSWERS[q["id"]]
    assert [t["id"] for t in out["topics_to_review"]] == list(dict.fromkeys(
        q["topic"] for q in out["questions"] if not q["correct"]))


def test_global_json_flag_and_text_mode():
    qs = key(11, 3, "--no-live")
    answers = ",".join(str(q["answer"]) for q in qs)
    out = run_json("--json", "quiz", "--seed", "11", "--count", "3", "--no-live", "--answers", answers)
    assert out["score"] == 3
    r = run("quiz", "--seed", "11", "--count", "3", "--no-live", "--answers", answers)
    assert r.returncode == 0
    assert r.stdout.count("Correct!") == 3 and "Score: 3/3 (100%)" in r.stdout
    assert "Nothing to review" in r.stdout


def test_seed_is_reproducible():
    args = ("quiz", "--seed", "1234", "--count", "6", "--answers", "1,2,3,1,2,3", "--json")
    a, b = run_json(*args), run_json(*args)
    assert a == b
    c = run_json("quiz", "--seed", "1235", "--count", "6", "--answers", "1,2,3,1,2,3", "--json")
    assert [q["id"] for q in c["questions"]] != [q["id"] for q in a["questions"]]


def test_list_json_is_the_whole_bank():
    out = run_json("quiz", "--list", "--json")
    assert set(out) == {"questions"}
    ids = [q["id"] for q in out["questions"]]
    assert set(ids) == set(BANK_ANSWERS) | set(live.LIVE_IDS)
    for q in out["questions"]:
        assert set(q) >= {"id", "topic", "difficulty", "question", "choices", "answer", "explanation"}
        if not q["live"]:
            assert q["answer"] == BANK_ANSWERS[q["id"]]
    assert [q["id"] for q in run_json("quiz", "--list", "--json", "--no-live")["questions"]] == list(BANK_ANSWERS)
    only = run_json("quiz", "--list", "--json", "--topic", "time-wait", "--difficulty", "hard")["questions"]
    assert only and {(q["topic"], q["difficulty"]) for q in only} == {("time-wait", "hard")}
    text = run("quiz", "--list", "--no-live").stdout
    assert text.count("*") >= len(BANK_ANSWERS) and "tw-linux-length" in text


def test_list_is_stable_without_a_seed():
    # live questions included: their choices and order must not change between two listings
    assert run_json("quiz", "--list", "--json") == run_json("quiz", "--list", "--json")


def test_list_topics():
    out = run_json("quiz", "--list-topics", "--json")["topics"]
    assert [t["id"] for t in out] == [t.id for t in BANK.topics]
    assert sum(t["questions"] for t in out) == len(BANK.questions) + len(live.LIVE_IDS)
    assert sum(t["live"] for t in out) == len(live.LIVE_IDS)
    text = run("quiz", "--list-topics").stdout
    assert all(t.id in text and t.title in text for t in BANK.topics)


@pytest.mark.parametrize("args, message", [
    (("--count", "0"), "--count"),
    (("--count", "many"), "--count"),
    (("--seed", "-3"), "--seed"),
    (("--topic", "nope"), "unknown topic"),
    (("--difficulty", "extreme"), "unknown difficulty"),
    (("--seed", "1", "--count", "3", "--answers", "1,2"), "2 answers for 3 questions"),
    (("--seed", "1", "--count", "3", "--answers", "1,2,3,4"), "4 answers for 3 questions"),
    (("--seed", "1", "--count", "3", "--answers", "1,b,3"), "answer 2 is 'b'"),
    (("--seed", "1", "--count", "3", "--answers", "1,9,3"), "answer 2 is '9'"),
    (("--seed", "1", "--count", "3", "--answers", ""), "--answers is empty"),
    (("--netns", "no-such-ns-quiz"), "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = run("quiz", *args, "--json")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portscope: error:") and message in lines[0], r.stderr


def test_end_of_input_ends_with_score_so_far():
    r = run("quiz", "--seed", "5", "--count", "3")        # stdin is /dev/null: EOF at once
    assert r.returncode == 0, r.stderr
    assert "Stopped after 0 of 3 questions (end of input)." in r.stdout
    assert "Score so far: 0/0" in r.stdout and "Traceback" not in r.stderr
    qs = key(5, 3)
    r = run("quiz", "--seed", "5", "--count", "3", input=f"{qs[0]['answer']}\n")
    assert r.returncode == 0
    assert "Correct!" in r.stdout and "Score so far: 1/1 (100%)" in r.stdout
    assert "Stopped after 1 of 3 questions" in r.stdout


def test_piped_round_reasks_on_bad_input():
    qs = key(9, 2)
    wrong = qs[1]["answer"] % len(qs[1]["choices"]) + 1
    r = run("quiz", "--seed", "9", "--count", "2", input=f"\nx\n0\n{len(qs[0]['choices']) + 1}\n{qs[0]['answer']}\n{wrong}\n")
    assert r.returncode == 0
    assert r.stdout.count("Please type a number from 1 to") == 1
    assert "'x' is not a choice" in r.stdout and "'0' is not a choice" in r.stdout
    assert r.stdout.count("Question 1 of 2") == 1           # re-asked, not re-shown
    assert "Score: 1/2 (50%)" in r.stdout and f"--topic {qs[1]['topic']}" in r.stdout


def test_small_pool_asks_what_there_is():
    pool = quiz.filtered(BANK.questions, "dynamic", "easy")
    r = run("quiz", "--topic", "dyn", "--difficulty", "easy", "--count", "5", "--no-live", input="q\n")
    assert r.returncode == 0
    assert ("Only 1 question matches" if len(pool) == 1 else f"Only {len(pool)} questions match") in r.stdout
    assert f"Question 1 of {len(pool)}" in r.stdout


def test_q_stops_the_quiz():
    r = run("quiz", "--seed", "9", "--count", "4", input="q\n")
    assert r.returncode == 0 and "Stopped after 0 of 4 questions (you stopped)." in r.stdout


def test_json_interactive_keeps_stdout_pure():
    qs = key(21, 2)
    r = run("quiz", "--seed", "21", "--count", "2", "--json", input=f"{qs[0]['answer']}\n{qs[1]['answer']}\n")
    out = json.loads(r.stdout)
    assert out["score"] == 2 and out["ended"] == "complete"
    assert "Question 1 of 2" in r.stderr and "Score: 2/2" in r.stderr


def test_sigint_ends_with_score_so_far():
    p = subprocess.Popen([PORTSCOPE, "quiz", "--seed", "5", "--count", "3"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        seen = ""
        deadline = time.monotonic() + 15
        while "Your answer" not in seen and time.monotonic() < deadline:
            seen += os.read(p.stdout.fileno(), 4096).decode()
        assert "Your answer" in seen
        p.send_signal(signal.SIGINT)                     # what Ctrl-C at the prompt sends
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert "Score so far: 0/0" in seen + out and "Traceback" not in err


# -- a real terminal -------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One private tmux server (its own socket) with one session; killed at the end."""

    def __init__(self, command: str):
        self.dir = tempfile.mkdtemp(prefix="psquiz-")
        self.sock = os.path.join(self.dir, "tmux.sock")
        self.name = "quiz"
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("TMUX", None)
        self._tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", self.name,
                   f"cd {ROOT} && {command}; echo \"[exit $?]\"; sleep 60", env=env)

    def _tmux(self, *args, env=None) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                              check=True, timeout=10, env=env).stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if text in s:
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear; screen:\n{s}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.live
@needs_tmux
def test_full_round_in_a_real_terminal():
    qs = key(1, 3)
    a1, a3 = qs[0]["answer"], qs[2]["answer"]
    wrong2 = qs[1]["answer"] % len(qs[1]["choices"]) + 1
    t = Tmux(f"{PORTSCOPE} quiz --count 3 --seed 1")
    try:
        s = t.wait_for("Your answer (1-")
        assert "Question 1 of 3" in s and qs[0]["question"][:60] in s
        t.send("x", "Enter")
        t.wait_for("'x' is not a choice")
        t.send("Enter")
        t.wait_for("Please type a number from 1 to")
        t.send("7", "Enter")
        t.wait_for("'7' is not a choice")
        t.send(str(a1), "Enter")
        s = t.wait_for("Question 2 of 3")
        assert "Correct!" in s and qs[0]["explanation"][:50] in s
        t.send(str(wrong2), "Enter")
        s = t.wait_for("Question 3 of 3")
        assert f"Not quite. The answer is {qs[1]['answer']})" in s
        t.send(str(a3), "Enter")
        s = t.wait_for("[exit 0]")
        assert s.count("Correct!") == 2
        assert "Score: 2/3 (67%)" in s
        assert "Topics to review:" in s and f"--topic {qs[1]['topic']}" in s
        assert "--seed 1" in s and "Traceback" not in s
    finally:
        t.close()


@pytest.mark.live
@needs_tmux
def test_ctrl_c_in_a_real_terminal():
    qs = key(2, 3)
    t = Tmux(f"{PORTSCOPE} quiz --count 3 --seed 2")
    try:
        t.wait_for("Your answer (1-")
        t.send(str(qs[0]["answer"]), "Enter")
        t.wait_for("Question 2 of 3")
        t.send("C-c")
        s = t.wait_for("[exit 130]")
        assert "Stopped after 1 of 3 questions (interrupted)." in s
        assert "Score so far: 1/1 (100%)" in s and "Traceback" not in s
    finally:
        t.close()


@pytest.mark.live
@needs_tmux
def test_ctrl_d_in_a_real_terminal():
    t = Tmux(f"{PORTSCOPE} quiz --count 2 --seed 3")
    try:
        t.wait_for("Your answer (1-")
        t.send("C-d")
        s = t.wait_for("[exit 0]")
        assert "Stopped after 0 of 2 questions (end of input)." in s and "Score so far: 0/0" in s
    finally:
        t.close()


def test_list_json_and_text_show_every_source():
    out = run_json("quiz", "--list", "--json")
    bank_sources = {q.id: q.source for q in BANK.questions}
    for q in out["questions"]:
        assert isinstance(q["source"], str) and q["source"].strip(), q["id"]
        if q["live"]:
            assert q["source"].startswith("this host: ") and q["host_facts"]
            assert all(set(h) == {"fact", "value", "command"} for h in q["host_facts"])
        else:
            assert q["source"] == bank_sources[q["id"]] and "host_facts" not in q
    text = run("quiz", "--list", "--no-live").stdout
    assert text.count("\n   Source: ") == len(BANK.questions)


def test_interactive_round_prints_the_source_after_each_answer():
    qs = key(11, 3)
    wrong = qs[1]["answer"] % len(qs[1]["choices"]) + 1
    r = run("quiz", "--seed", "11", "--count", "3", input=f"{qs[0]['answer']}\n{wrong}\n{qs[2]['answer']}\n")
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    for q in qs:
        label = "Built from " if q["live"] else "Source: "
        # after the question's explanation, right or wrong
        assert f"{label}{' '.join(q['source'].split())}" in flat, q["id"]
    assert flat.count("Source: ") + flat.count("Built from this host: ") == 3
    # graded from --answers (text mode) the same
    g = " ".join(run("quiz", "--seed", "11", "--count", "3", "--answers", "1,1,1").stdout.split())
    assert g.count("Source: ") + g.count("Built from this host: ") == 3
