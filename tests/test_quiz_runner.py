"""The runner's loop and scoring, driven by scripted input."""
from __future__ import annotations

import pytest

from portscope import quiz
from portscope.errors import BadInput
from portscope.quiz import runner

QS = quiz.select(quiz.load().questions, 4, seed=99)


def scripted(lines):
    """ask() that replays lines; None = end of input; an exception instance is raised."""
    it = iter(lines)
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        nxt = next(it, None)
        if isinstance(nxt, BaseException):
            raise nxt
        return nxt

    return ask, prompts


def wrong(q) -> int:
    return q.answer % len(q.choices) + 1


def test_full_round_scores_and_reviews():
    said = []
    ask, prompts = scripted([f"{QS[0].answer}\n", f"{wrong(QS[1])}\n", f" {QS[2].answer} \n", f"{wrong(QS[3])}\n"])
    o = runner.play(QS, ask, said.append, seed=99)
    assert (o.score, o.total, o.answered, o.ended) == (2, 4, 4, runner.COMPLETE)
    assert o.topics_to_review == list(dict.fromkeys([QS[1].topic, QS[3].topic]))
    assert len(prompts) == 4
    text = "\n".join(said)
    assert text.count("Correct!") == 2 and text.count("Not quite.") == 2
    assert QS[1].explanation[:40] in text
    s = runner.summary(o)
    assert "Score: 2/4 (50%)" in s and "Topics to review:" in s


@pytest.mark.parametrize("bad", ["\n", "   \n", "x\n", "0\n", "9\n", "-1\n", "1.0\n", "one\n"])
def test_bad_input_reasks_the_same_question(bad):
    said = []
    ask, prompts = scripted([bad, f"{QS[0].answer}\n", None])
    o = runner.play(QS[:2], ask, said.append)
    assert len(prompts) == 3 and o.given == (QS[0].answer, None)
    assert sum("Question 1 of 2" in s for s in said) == 1
    assert any("type a number from 1 to" in s for s in said)


def test_eof_quit_and_interrupt_keep_the_score_so_far():
    ask, _ = scripted([f"{QS[0].answer}\n", None])
    o = runner.play(QS, ask, lambda s: None)
    assert (o.ended, o.score, o.answered, o.total) == (runner.EOF, 1, 1, 4)
    assert "Score so far: 1/1 (100%)" in runner.summary(o)
    ask, _ = scripted([f"{wrong(QS[0])}\n", "Q\n"])
    o = runner.play(QS, ask, lambda s: None)
    assert (o.ended, o.score, o.answered) == (runner.QUIT, 0, 1)
    assert "Stopped after 1 of 4 questions (you stopped)" in runner.summary(o)
    ask, _ = scripted([f"{QS[0].answer}\n", f"{QS[1].answer}\n", KeyboardInterrupt()])
    o = runner.play(QS, ask, lambda s: None)
    assert (o.ended, o.score, o.answered) == (runner.INTERRUPTED, 2, 2)
    j = o.to_json()
    assert j["score"] == 2 and j["total"] == 4 and j["answered"] == 2
    assert [q["correct"] for q in j["questions"]] == [True, True, False, False]
    assert [q["given"] for q in j["questions"]] == [QS[0].answer, QS[1].answer, None, None]


def test_parse_answers():
    assert runner.parse_answers(" 1, 2 ,3,4", QS) == [1, 2, 3, 4]
    for bad in ("1,2,3", "1,2,3,4,1", "1,,3,4", "a,b,c,d", "1,2,3,0", "1,2,3,5", ""):
        with pytest.raises(BadInput):
            runner.parse_answers(bad, QS)


def test_grade_json_has_no_check_field_but_keeps_answers():
    o = runner.grade(QS, [q.answer for q in QS], seed=99)
    j = o.to_json()
    assert j["score"] == 4 and j["topics_to_review"] == []
    assert all("check" not in q and q["correct"] is True for q in j["questions"])
