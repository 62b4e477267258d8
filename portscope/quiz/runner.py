"""Ask questions, check answers, keep the score.

`play` drives one round through two callables, `ask(prompt) -> line | None`
(None at end of input; Ctrl-C arrives as KeyboardInterrupt) and `say(text)`, so
the same loop runs in a terminal, over a pipe and in tests. `grade` scores a
list of answers given up front (`--answers 2,1,4`).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import BadInput
from ..numparse import is_digits
from . import Question

COMPLETE, EOF, QUIT, INTERRUPTED = "complete", "eof", "quit", "interrupted"
QUIT_WORDS = ("q", "quit", "exit")
WIDTH = 88
Style = Callable[..., str]     # click.style's shape: style(text, fg=..., bold=...) -> str


def plain(text: str, **_style: Any) -> str:
    """The text unstyled: the default `style` (click.style's signature, for --json and pipes)."""
    return text


@dataclass(frozen=True)
class Outcome:
    """One round: the questions, the answers given, how it ended."""

    questions: tuple[Question, ...]
    given: tuple[int | None, ...]      # one per question; None: not answered
    seed: int | None = None
    ended: str = COMPLETE              # complete | eof | quit | interrupted
    topic_titles: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Questions asked."""
        return len(self.questions)

    @property
    def answered(self) -> int:
        """Questions answered before the round ended."""
        return sum(g is not None for g in self.given)

    @property
    def score(self) -> int:
        """Right answers."""
        return sum(g == q.answer for q, g in zip(self.questions, self.given))

    @property
    def topics_to_review(self) -> list[str]:
        """Topics of wrongly answered questions, first miss first."""
        return list(dict.fromkeys(q.topic for q, g in zip(self.questions, self.given)
                                  if g is not None and g != q.answer))

    def to_json(self) -> dict:
        """The `quiz --json` document (docs/json.md); the checks are left out."""
        qs = []
        for q, g in zip(self.questions, self.given):
            d = q.to_json()
            d.pop("check", None)
            d["given"] = g
            d["correct"] = g == q.answer
            qs.append(d)
        titles = dict(self.topic_titles)
        return {"score": self.score, "total": self.total, "answered": self.answered,
                "seed": self.seed, "ended": self.ended,
                "topics_to_review": [{"id": t, "title": titles.get(t, t)} for t in self.topics_to_review],
                "questions": qs, "notes": list(self.notes)}


def parse_answers(text: str, questions: Sequence[Question]) -> list[int]:
    """'2,1,4' -> [2, 1, 4], one valid choice number per question, or BadInput."""
    parts = [p.strip() for p in str(text).split(",")]
    if parts == [""]:
        raise BadInput("--answers is empty (expected choice numbers like 2,1,4)")
    if len(parts) != len(questions):
        raise BadInput(f"--answers has {len(parts)} answer{'s' if len(parts) != 1 else ''} "
                       f"for {len(questions)} question{'s' if len(questions) != 1 else ''}")
    out = []
    for i, (p, q) in enumerate(zip(parts, questions), 1):
        if not is_digits(p) or not 1 <= int(p) <= len(q.choices):
            raise BadInput(f"--answers: answer {i} is {p!r}, but question {i} ({q.id}) "
                           f"has choices 1..{len(q.choices)}")
        out.append(int(p))
    return out


def grade(questions: Sequence[Question], answers: Sequence[int], **kw: Any) -> Outcome:
    """The outcome of answers given up front (`--answers`); `kw` are Outcome's other fields."""
    return Outcome(tuple(questions), tuple(answers), **kw)


def _wrap(text: str, indent: str = "", paths: bool = False) -> str:
    # sources hold paths and commit ids: never split them at a hyphen or mid-word
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=not paths, break_long_words=not paths)


def render_question(q: Question, n: int, total: int, style: Style = plain) -> str:
    """Question n of total with its numbered choices, wrapped for a terminal."""
    head = f"Question {n} of {total}  [{q.topic}, {q.difficulty}{', this host' if q.live else ''}]"
    lines = [style(head, bold=True), _wrap(q.question)]
    for i, c in enumerate(q.choices, 1):
        lines.append(textwrap.fill(c, WIDTH, initial_indent=f"  {i}) ", subsequent_indent="     "))
    return "\n".join(lines)


def prompt_for(q: Question) -> str:
    """The input prompt, naming the valid choice numbers."""
    return f"Your answer (1-{len(q.choices)}, q to stop): "


def feedback(q: Question, given: int, style: Style = plain) -> str:
    """Right or wrong (with the right answer), the explanation and where to read more."""
    if given == q.answer:
        first = style("Correct!", fg="green", bold=True)
    else:
        first = style("Not quite.", fg="red", bold=True) + f" The answer is {q.answer}) {q.choices[q.answer - 1]}"
    out = [_wrap(first), _wrap(q.explanation)]
    if q.source:
        out.append(_wrap(f"Built from {q.source}" if q.live else f"Source: {q.source}", paths=True))
    if q.ref and q.ref != q.source:
        out.append(_wrap(f"More: {q.ref}"))
    return "\n".join(out)


def summary(o: Outcome, style: Style = plain) -> str:
    """The score and the topics to review."""
    pct = f" ({round(100 * o.score / o.answered)}%)" if o.answered else ""
    lines = []
    if o.ended != COMPLETE:
        why = {EOF: "end of input", QUIT: "you stopped", INTERRUPTED: "interrupted"}.get(o.ended, o.ended)
        lines.append(f"Stopped after {o.answered} of {o.total} question{'s' if o.total != 1 else ''} ({why}).")
        lines.append(style(f"Score so far: {o.score}/{o.answered}{pct}", bold=True))
    else:
        lines.append(style(f"Score: {o.score}/{o.total}{pct}", bold=True))
    review = o.topics_to_review
    if review:
        titles = dict(o.topic_titles)
        lines.append("Topics to review:")
        lines += [f"  - {t}: {titles.get(t, t)}  (portscope quiz --topic {t})" for t in review]
    elif o.answered:
        lines.append("Nothing to review: every answer was right.")
    return "\n".join(lines)


def read_choice(q: Question, ask: Callable[[str], str | None], say: Callable[[str], None]) -> int | str:
    """A valid choice number, or EOF / QUIT; re-asks on anything else."""
    n = len(q.choices)
    while True:
        line = ask(prompt_for(q))
        if line is None:
            return EOF
        s = line.strip()
        if s.lower() in QUIT_WORDS:
            return QUIT
        if is_digits(s) and 1 <= int(s) <= n:
            return int(s)
        if not s:
            say(f"Please type a number from 1 to {n} (or q to stop).")
        else:
            say(f"{s!r} is not a choice: type a number from 1 to {n} (or q to stop).")


def play(questions: Sequence[Question], ask: Callable[[str], str | None], say: Callable[[str], None],
         *, style: Style = plain, **kw: Any) -> Outcome:
    """One interactive round; ends early on EOF, q or Ctrl-C with the score so far."""
    given: list[int | None] = [None] * len(questions)
    ended = COMPLETE
    for i, q in enumerate(questions):
        say("")
        say(render_question(q, i + 1, len(questions), style))
        try:
            r = read_choice(q, ask, say)
        except KeyboardInterrupt:
            say("")
            ended = INTERRUPTED
            break
        if isinstance(r, str):
            if r == EOF:
                say("")
            ended = r
            break
        given[i] = r
        say(feedback(q, r, style))
    return Outcome(tuple(questions), tuple(given), ended=ended, **kw)


__all__ = ["Outcome", "parse_answers", "grade", "play", "render_question", "feedback", "summary",
           "read_choice", "COMPLETE", "EOF", "QUIT", "INTERRUPTED"]
