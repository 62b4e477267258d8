"""The quiz: a question bank kept as data (bank.json), questions generated from this
host (live.py), and a runner that asks and scores (runner.py).

Every fact-bearing question carries a `check`, a machine-readable claim that
checks.py evaluates with the library itself (port classes, range sizes, the
allocator model, the kernel in a fresh namespace), so the lessons and the tool
cannot drift apart without a test failing.

Every question also carries a `source`: where a learner can check its answer and
explanation (an RFC and section, a kernel file and commit, a vendor page). A bank
question without one does not load. Questions generated from this host name the
host facts they were built from instead (`host_facts`: the value and the command
that shows it), and their `source` says the same in one line.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Container, Iterable

from ..errors import BadInput, SystemReadError
from ..numparse import parse_whole

BANK_FILE = os.path.join(os.path.dirname(__file__), "bank.json")
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Topic:
    """A quiz topic: id (what --topic takes) and title."""

    id: str
    title: str


@dataclass(frozen=True)
class Question:
    """One multiple-choice question, from the bank or generated from this host (`live`)."""

    id: str
    topic: str
    difficulty: str
    question: str
    choices: tuple[str, ...]
    answer: int                 # 1-based, as the user types it
    explanation: str
    check: dict | None = field(default=None, compare=False)
    ref: str | None = None      # where a learner can read more
    live: bool = False          # generated from this host (live.py)
    source: str | None = None   # where the answer and explanation can be checked
    host_facts: tuple = field(default=(), compare=False)   # live: ({fact, value, command}, ...)

    def to_json(self) -> dict:
        """One question of `quiz --json` (ref and check only when present)."""
        d = {"id": self.id, "topic": self.topic, "difficulty": self.difficulty,
             "live": self.live, "question": self.question, "choices": list(self.choices),
             "answer": self.answer, "explanation": self.explanation, "source": self.source}
        if self.host_facts:
            d["host_facts"] = [dict(h) for h in self.host_facts]
        if self.ref:
            d["ref"] = self.ref
        if self.check is not None:
            d["check"] = self.check
        return d


@dataclass(frozen=True)
class Bank:
    """The loaded question bank: topics and questions."""

    topics: tuple[Topic, ...]
    questions: tuple[Question, ...]

    def topic(self, topic_id: str) -> Topic:
        """The topic with this id; KeyError if there is none."""
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)

    def with_questions(self, extra: Iterable[Question]) -> "Bank":
        """A bank with `extra` questions (the live ones) appended."""
        return Bank(self.topics, self.questions + tuple(extra))


def problems(raw: dict) -> list[str]:
    """Everything wrong with a bank document; [] when it is sound.

    Run on every load (cheap at this size) so a broken edit fails loudly at the
    first `portscope quiz`, and by the tests on the shipped file.
    """
    out: list[str] = []
    topics = raw.get("topics")
    qs = raw.get("questions")
    if not isinstance(topics, list) or not topics:
        return ["no topics"]
    if not isinstance(qs, list) or not qs:
        return ["no questions"]
    tids = [t.get("id") for t in topics if isinstance(t, dict)]
    if len(tids) != len(topics) or len(set(tids)) != len(tids) or not all(
            isinstance(t.get("title"), str) and t["title"].strip() for t in topics):
        out.append("topics need unique ids and titles")
    seen: set = set()
    for i, q in enumerate(qs):
        where = f"question {i} ({q.get('id', '?') if isinstance(q, dict) else '?'})"
        if not isinstance(q, dict):
            out.append(f"{where}: not an object")
            continue
        out += [f"{where}: {p}" for p in question_problems(q, tids)]
        if q.get("id") in seen:
            out.append(f"{where}: duplicate id")
        seen.add(q.get("id"))
    return out


def question_problems(q: dict, topic_ids: Container[object]) -> list[str]:
    """What is wrong with one question (bank entry or generated)."""
    out = []
    for k in ("id", "question", "explanation", "source"):
        if not isinstance(q.get(k), str) or not q[k].strip():
            out.append(f"empty or missing {k}")
    if q.get("topic") not in topic_ids:
        out.append(f"unknown topic {q.get('topic')!r}")
    if q.get("difficulty") not in DIFFICULTIES:
        out.append(f"difficulty {q.get('difficulty')!r} is not one of {', '.join(DIFFICULTIES)}")
    ch = q.get("choices")
    if not isinstance(ch, list) or not 2 <= len(ch) <= 9 or not all(isinstance(c, str) and c.strip() for c in ch):
        out.append("choices must be 2 to 9 non-empty strings")
        return out
    norm = [" ".join(c.lower().split()) for c in ch]
    if len(set(norm)) != len(norm):
        out.append("duplicate choices")
    a = q.get("answer")
    # one integer answer is, by construction, exactly one correct choice
    if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= len(ch):
        out.append(f"answer {a!r} is not a choice number 1..{len(ch)}")
    chk = q.get("check")
    if chk is not None:
        if not isinstance(chk, dict) or not isinstance(chk.get("kind"), str):
            out.append("check needs a kind")
        elif "each" in chk:
            if not isinstance(chk["each"], list) or len(chk["each"]) != len(ch):
                out.append("check.each needs one entry per choice")
        elif not isinstance(chk.get("values"), list) or len(chk["values"]) != len(ch):
            out.append("check.values needs one entry per choice")
    return out


def _question(q: dict, live: bool = False) -> Question:
    return Question(id=q["id"], topic=q["topic"], difficulty=q["difficulty"], question=q["question"],
                    choices=tuple(q["choices"]), answer=q["answer"], explanation=q["explanation"],
                    check=q.get("check"), ref=q.get("ref"), live=live, source=q.get("source"))


def load(path: str = BANK_FILE) -> Bank:
    """The question bank; SystemReadError if the file is missing or unsound."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise SystemReadError(f"cannot read the quiz bank {path}: {e.strerror or e}")
    except ValueError as e:
        raise SystemReadError(f"the quiz bank {path} is not valid JSON: {e}")
    bad = problems(raw)
    if bad:
        raise SystemReadError(f"the quiz bank {path} is broken: " + "; ".join(bad[:3]))
    topics = tuple(Topic(t["id"], t["title"]) for t in raw["topics"])
    return Bank(topics, tuple(_question(q) for q in raw["questions"]))


def parse_topic(text: str | None, bank: Bank) -> str | None:
    """A topic id from user input (case-insensitive; a unique prefix is enough)."""
    if text is None:
        return None
    t = text.strip().lower()
    ids = [x.id for x in bank.topics]
    if t in ids:
        return t
    hits = [i for i in ids if i.startswith(t)] if t else []
    if len(hits) == 1:
        return hits[0]
    raise BadInput(f"unknown topic {text!r} (expected one of: {', '.join(ids)}; see --list-topics)")


def parse_difficulty(text: str | None) -> str | None:
    """A difficulty from user input (case-insensitive); None stays None; BadInput otherwise."""
    if text is None:
        return None
    d = text.strip().lower()
    if d not in DIFFICULTIES:
        raise BadInput(f"unknown difficulty {text!r} (expected one of: {', '.join(DIFFICULTIES)})")
    return d


def parse_count(text: str | int) -> int:
    """--count: a whole number >= 1 in ASCII digits; BadInput otherwise."""
    return parse_whole(text, "--count", 1, None, signed=False)


def parse_seed(text: str | int) -> int:
    """--seed: a non-negative whole number in ASCII digits; BadInput otherwise."""
    return parse_whole(text, "--seed", 0, 2**63 - 1, signed=False)


def filtered(questions: Iterable[Question], topic: str | None = None,
             difficulty: str | None = None) -> list[Question]:
    """The questions of `topic` and `difficulty` (None: any)."""
    return [q for q in questions
            if (topic is None or q.topic == topic) and (difficulty is None or q.difficulty == difficulty)]


def select(questions: Iterable[Question], count: int, seed: int, topic: str | None = None,
           difficulty: str | None = None) -> list[Question]:
    """`count` questions in a seeded random order (fewer if the pool is smaller).

    The pool is sorted by id first, so the same seed picks the same questions in
    the same order whatever order the bank or the live generator lists them in.
    """
    pool = sorted(filtered(questions, topic, difficulty), key=lambda q: q.id)
    if not pool:
        what = " and ".join(x for x in (f"topic {topic}" if topic else "",
                                        f"difficulty {difficulty}" if difficulty else "") if x)
        raise BadInput(f"no questions for {what}")
    return random.Random(seed).sample(pool, min(count, len(pool)))


__all__ = ["Bank", "Question", "Topic", "DIFFICULTIES", "load", "problems", "question_problems",
           "parse_topic", "parse_difficulty", "parse_count", "parse_seed", "filtered", "select"]
