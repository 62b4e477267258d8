"""`portscope quiz`: learn about ports, one question at a time."""
from __future__ import annotations

import sys

import click

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json


@click.command()
@click.option("--count", "-n", "count", default="10", show_default=True, metavar="N",
              help="How many questions to ask.")
@click.option("--topic", "-t", metavar="T", help="Only this topic (see --list-topics).")
@click.option("--difficulty", "-d", metavar="D", help="Only easy, medium or hard questions.")
@click.option("--seed", "-s", metavar="S",
              help="Pick and order questions from this seed (a run with the same seed repeats them).")
@click.option("--answers", "-a", metavar="2,1,4",
              help="Answer non-interactively: one choice number per question, in order.")
@click.option("--list", "list_all", is_flag=True, help="Print the whole bank with answers and explanations.")
@click.option("--list-topics", is_flag=True, help="Print the topics and how many questions each has.")
@click.option("--live/--no-live", default=True, show_default=True,
              help="Include questions generated from this host (its range, privileged ports, listeners).")
@json_option
@netns_option
def quiz(count, topic, difficulty, seed, answers, list_all, list_topics, live, json_out, netns) -> None:
    """Learn how ports work: a short multiple-choice quiz.

    \b
    Interactive by default: type a choice number after each question (q stops;
    Ctrl-C or end of input ends with the score so far). Each answer is followed
    by the explanation; the end shows the score and the topics to review.
    The questions come from a bank of facts checked against portscope's own
    library, plus a few computed from this host (--no-live leaves them out).

    \b
    Examples:
      portscope quiz --count 5 --topic time-wait
      portscope quiz --seed 7 --count 3 --answers 2,1,4 --json
      portscope quiz --list --json
    """
    import secrets

    from .. import quiz as bank_mod

    as_json = want_json(json_out)
    ns = netns_of(netns)
    if ns:
        from ..netns import resolve
        resolve(ns)   # a mistyped --netns is an error, not a quiz without live questions
    bank = bank_mod.load()
    topic = bank_mod.parse_topic(topic, bank)
    difficulty = bank_mod.parse_difficulty(difficulty)
    n = bank_mod.parse_count(count)
    seed_given = seed is not None
    seed = bank_mod.parse_seed(seed) if seed_given else secrets.randbelow(1_000_000)

    questions = list(bank.questions)
    notes: tuple[str, ...] = ()
    if live:
        from ..quiz import live as live_mod
        # a listing is stable unless a seed is asked for; a quiz run varies
        gen = live_mod.generate(None if list_all and not seed_given else seed, netns=ns)
        questions += gen.questions
        notes = gen.notes
    if verbose():
        for note in notes:
            click.echo(f"portscope: note: {note}", err=True)

    if list_topics:
        _list_topics(bank, questions, as_json)
        return
    if list_all:
        _list(bank_mod.filtered(questions, topic, difficulty), as_json)
        return

    from ..quiz import runner

    chosen = bank_mod.select(questions, n, seed, topic, difficulty)
    meta = dict(seed=seed, topic_titles=tuple((t.id, t.title) for t in bank.topics), notes=notes)
    if answers is not None:
        given = runner.parse_answers(answers, chosen)   # validated before anything is printed
        outcome = runner.grade(chosen, given, **meta)
        if as_json:
            emit_json(outcome.to_json())
        else:
            _print_graded(outcome)
        return

    # interactive; with --json the conversation goes to stderr, the result to stdout
    err = as_json
    style = click.style if _isatty(sys.stderr if err else sys.stdout) else runner.plain

    def say(text: str) -> None:
        click.echo(text, err=err)

    def ask(prompt: str) -> str | None:
        click.echo(prompt, nl=False, err=err)
        (sys.stderr if err else sys.stdout).flush()
        line = sys.stdin.readline()
        return line if line else None

    if not as_json and len(chosen) < n:
        say("Only 1 question matches; asking it." if len(chosen) == 1
            else f"Only {len(chosen)} questions match; asking all of them.")
    outcome = runner.play(chosen, ask, say, style=style, **meta)
    say("")
    say(runner.summary(outcome, style))
    say(f"(seed {seed}: `portscope quiz --seed {seed}"
        + (f" --count {n}" if n != 10 else "") + (f" --topic {topic}" if topic else "")
        + (f" --difficulty {difficulty}" if difficulty else "") + ("" if live else " --no-live")
        + "` asks the same questions again)")
    if as_json:
        emit_json(outcome.to_json())
    if outcome.ended == runner.INTERRUPTED:
        sys.exit(130)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _print_graded(outcome) -> None:
    from ..quiz import runner

    for i, (q, g) in enumerate(zip(outcome.questions, outcome.given), 1):
        if i > 1:
            click.echo("")
        click.echo(runner.render_question(q, i, outcome.total, click.style))
        click.echo(f"Your answer: {g}")
        click.echo(runner.feedback(q, g, click.style))
    click.echo("")
    click.echo(runner.summary(outcome, click.style))


def _list_topics(bank, questions, as_json: bool) -> None:
    counts = {t.id: 0 for t in bank.topics}
    live = {t.id: 0 for t in bank.topics}
    for q in questions:
        counts[q.topic] += 1
        live[q.topic] += q.live
    if as_json:
        emit_json({"topics": [{"id": t.id, "title": t.title, "questions": counts[t.id],
                               "live": live[t.id]} for t in bank.topics]})
        return
    w = max(len(t.id) for t in bank.topics)
    for t in bank.topics:
        extra = f" ({live[t.id]} from this host)" if live[t.id] else ""
        click.echo(f"{t.id:<{w}}  {counts[t.id]:>2} questions{extra:<20}  {t.title}")


def _list(questions, as_json: bool) -> None:
    if as_json:
        emit_json({"questions": [q.to_json() for q in questions]})
        return
    for i, q in enumerate(questions):
        if i:
            click.echo("")
        tag = ", this host" if q.live else ""
        click.echo(click.style(f"{q.id}  [{q.topic}, {q.difficulty}{tag}]", bold=True))
        click.echo(q.question)
        for j, c in enumerate(q.choices, 1):
            mark = "*" if j == q.answer else " "
            click.echo(f" {mark}{j}) {c}")
        click.echo(f"   {q.explanation}")
        if q.source:
            click.echo(f"   Built from {q.source}" if q.live else f"   Source: {q.source}")
