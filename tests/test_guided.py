"""Guided decoding: guides derived from templates, the hf engine's token masks, and what the rows record."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import yaml

from helpers import questions
from metaconf.data.schema import Question
from metaconf.engines.types import TokenLogprob
from metaconf.errors import ConfigError
from metaconf.tasks import (
    answer_messages,
    load_template,
    pairwise_messages,
    parse_answer,
    parse_pairwise,
    parse_single,
    single_messages,
)
from metaconf.tasks.guides import answer_guide, check_template, pairwise_guide, resolve_format, single_guide
from metaconf.tasks.parsing import expected_confidence
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.templates import parse_template


def question(kind: str, i: int = 0, n_choices: int = 3) -> Question:
    fields = {"id": f"{kind}-{i}", "dataset": "toy", "domain": "toy", "question": f"Question {i} about {kind}?"}
    if kind == "mc":
        return questions.mc("B", [f"option {c}" for c in range(n_choices)], **fields)
    return {"numeric": questions.num, "open": questions.open_q, "boolean": questions.boolean}[kind](
        {"numeric": "12", "open": "Paris", "boolean": "yes"}[kind], **fields
    )


KINDS = ("mc", "numeric", "open", "boolean")
QUESTIONS = [question(k, i) for k in KINDS for i in range(2)]
PAIRS = [(question(a, 0), question(b, 1)) for a in KINDS for b in KINDS]


def template_file(tmp_path, **changes):
    raw = {**yaml.safe_load(Path(load_template("single").path).read_text()), **changes}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- guides from templates -----------------------------------------------------------------------------------
def test_guides_follow_the_answer_type_and_the_question_options():
    assert single_guide(question("mc", n_choices=2)) == "Answer: [AB]\\nConfidence: (100|[1-9]?[0-9])%"
    assert answer_guide(question("mc", n_choices=5)) == "Answer: [ABCDE]"
    assert single_guide(question("boolean")).startswith("Answer: ([Yy]es|[Nn]o)\\n")
    g = pairwise_guide(question("numeric"), question("mc", n_choices=4))
    assert g.startswith("Choice: Question [12]\\nAnswer 1: -?[0-9]") and g.endswith("\\nAnswer 2: [ABCD]")
    # python's re reads the dialect too: the target format round-trips through the guide
    for q in QUESTIONS:
        assert re.fullmatch(
            single_guide(q),
            {"mc": "Answer: B", "numeric": "Answer: -12.5", "open": "Answer: Paris", "boolean": "Answer: no"}[
                q.answer_type
            ]
            + "\nConfidence: 100%",
        )
        assert not re.fullmatch(single_guide(q), "Answer: B\nConfidence: 101%")


def longest_match(guide: str) -> str:
    """The longest reply a guide of this module's dialect allows, built construct by construct."""
    out = re.sub(r"\[A-Za-z0-9\]\[ -~\]\{0,(\d+)\}", lambda m: "x" * (int(m.group(1)) + 1), guide)
    out = re.sub(
        r"-\?\[0-9\]\{1,(\d+)\}(\(\\\.\[0-9\]\{1,3\}\)\?)?",
        lambda m: "-" + "9" * int(m.group(1)) + (".999" if m.group(2) else ""),
        out,
    )
    out = out.replace("([Yy]es|[Nn]o)", "yes").replace("(100|[1-9]?[0-9])", "100")
    out = re.sub(r"\[([A-Z0-9]+)\]", lambda m: m.group(1)[0], out)
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), out)


def test_every_guide_fits_the_token_limit_even_at_one_byte_per_token():
    for t in ("answer", "single", "pairwise"):
        limit = load_template(t).token_limit(guided=True)
        for q1, q2 in PAIRS:
            guide = (
                {"answer": answer_guide, "single": single_guide}[t](q1) if t != "pairwise" else pairwise_guide(q1, q2)
            )
            longest = longest_match(guide)
            assert re.fullmatch(guide, longest), (guide, longest)
            eos = 0 if guide.endswith("%") else 1  # a reply that could go on needs an end-of-sequence token
            assert len(longest.encode()) + eos <= limit, (t, guide)
            if q1.answer_type == "open" and t == "single":
                assert len(longest) == limit  # the open answer gets all the room that is left


def test_a_users_template_gets_its_own_guide(tmp_path):
    path = template_file(tmp_path, output="Reply: {answer} | sure: {confidence}/100", version=7)
    t = parse_template(yaml.safe_load(path.read_text()), str(path))
    assert single_guide(question("mc", n_choices=2), t) == "Reply: [AB] \\| sure: (100|[1-9]?[0-9])/100"


@pytest.mark.parametrize(
    "output, why",
    [
        ("Answer: {answer}\nConfidence: {confidence}% ({reason})", "unknown field {reason}"),
        ("Answer: {answer}", "missing {confidence}"),
        ("Answer: {answer:>5}\nConfidence: {confidence}%", "format spec"),
        ("Answer: {answer}\nConfidence: {confidence}% {answer}", "appears twice"),
        ("Answer: {answer\nConfidence", "expected '}'"),
    ],
)
def test_templates_that_cannot_be_guided_are_refused_in_one_line(tmp_path, output, why):
    path = template_file(tmp_path, output=output)
    t = parse_template(yaml.safe_load(path.read_text()), str(path))
    with pytest.raises(ConfigError) as err:
        check_template(t, "single")
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "field 'output'" in message and why in message


def test_a_token_limit_too_small_for_the_format_is_refused(tmp_path):
    path = template_file(tmp_path, max_new_tokens=20, guided_max_new_tokens=None)
    t = parse_template(yaml.safe_load(path.read_text()), str(path))
    with pytest.raises(ConfigError, match=r"mine.yaml: field 'output'.*max_new_tokens 20 is too small"):
        single_guide(question("open"), t)
    with pytest.raises(ConfigError, match="answer.yaml: field 'output'"):
        answer_guide(question("open"), "answer", max_new_tokens=6)


def test_engines_without_guidance_fall_back_to_free_with_a_warning():
    from metaconf.engines.scripted import ScriptedEngine

    engine = ScriptedEngine(lambda m, i: "Answer: A", quiet=True)
    with pytest.warns(UserWarning, match="evaluation: the .* engine cannot guide"):
        assert resolve_format("guided", engine, "evaluation") == "free"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_format("free", engine, "evaluation") == "free"
    with pytest.raises(ConfigError):
        resolve_format("json", engine, "evaluation")


# -- parsing -------------------------------------------------------------------------------------------------
def test_an_option_letter_is_never_read_as_a_choice():
    mc = question("mc")
    assert parse_pairwise("Choice: A\nAnswer 1: A\nAnswer 2: B", mc, mc).choice is None
    assert parse_pairwise("Choice: Question B\nAnswer 1: A\nAnswer 2: B", mc, mc).choice is None
    p = parse_pairwise("Choice: Question 2\nAnswer 1: A\nAnswer 2: B", mc, mc)
    assert p.choice == 2 and p.parsed
    assert "Choice: Question <1 or 2>" in pairwise_messages(mc, mc)[-1]["content"]


def lp(p: float) -> float:
    return math.log(p)


def test_expected_confidence_by_hand():
    tokens = [
        TokenLogprob("Answer", 0.0),
        TokenLogprob(": B", 0.0),
        TokenLogprob("\n", 0.0),
        TokenLogprob("Confidence", 0.0),
        TokenLogprob(":", 0.0),
        TokenLogprob(" ", 0.0),
        TokenLogprob("8", lp(0.6), {"8": lp(0.6), "3": lp(0.3), "1": lp(0.1)}),
        TokenLogprob("5", lp(0.5), {"5": lp(0.5), "0": lp(0.3), "%": lp(0.2)}),
        TokenLogprob("%", 0.0, {"%": 0.0}),
    ]
    # sampled 8 then 5 then '%': 8 -> 0.5*85 + 0.3*80 + 0.2*8
    # unsampled 3 -> mean(3, 30..39); 1 -> mean(1, 10..19, 100)
    after_8 = 0.5 * 85 + 0.3 * 80 + 0.2 * 8
    mean_3 = (3 + sum(range(30, 40))) / 11
    mean_1 = (1 + sum(range(10, 20)) + 100) / 12
    want = (0.6 * after_8 + 0.3 * mean_3 + 0.1 * mean_1) / 100
    assert expected_confidence(tokens) == pytest.approx(want)
    assert expected_confidence(tokens[:6]) is None  # no confidence digits
    # a tokenizer with one token per whole number: the plain expectation
    whole = tokens[:6] + [TokenLogprob("85", lp(0.75), {"85": lp(0.75), "40": lp(0.25)}), TokenLogprob("%", 0.0)]
    assert expected_confidence(whole) == pytest.approx(0.75 * 0.85 + 0.25 * 0.40)


# -- the hf engine -------------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")
pytest.importorskip("llguidance")

from metaconf.engines.hf import HFEngine  # noqa: E402
from metaconf.engines.store import CompletionStore  # noqa: E402


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine(tiny_model, quiet=True)


def test_guided_replies_always_match_and_parse(engine):
    """Random weights, sampled at T=1: the model itself follows no format, so every match is the mask's doing."""
    single = load_template("single").generation(guided=True)
    answer = load_template("answer").generation(guided=True)
    pair = load_template("pairwise").generation(guided=True)
    for seed in range(2):
        outs = engine.generate(
            [single_messages(q) for q in QUESTIONS],
            n=3,
            temperature=1.0,
            seed=seed,
            guide=[single_guide(q) for q in QUESTIONS],
            **single,
        )
        for q, comps in zip(QUESTIONS, outs):
            for c in comps:
                assert re.fullmatch(single_guide(q), c.text), c.text
                assert c.finish_reason == "stop"
                parsed = parse_single(c.text, q)
                assert parsed.parsed, c.text
                if q.answer_type == "mc":
                    assert parsed.answer in ("A", "B", "C")  # three options: never D or later
        outs = engine.generate(
            [answer_messages(q) for q in QUESTIONS],
            n=2,
            temperature=1.0,
            seed=seed,
            guide=[answer_guide(q) for q in QUESTIONS],
            **answer,
        )
        for q, comps in zip(QUESTIONS, outs):
            for c in comps:
                assert re.fullmatch(answer_guide(q), c.text) and parse_answer(c.text, q) is not None, c.text
        outs = engine.generate(
            [pairwise_messages(a, b) for a, b in PAIRS],
            n=1,
            temperature=1.0,
            seed=seed,
            guide=[pairwise_guide(a, b) for a, b in PAIRS],
            **pair,
        )
        for (a, b), comps in zip(PAIRS, outs):
            for c in comps:
                assert re.fullmatch(pairwise_guide(a, b), c.text), c.text
                assert parse_pairwise(c.text, a, b).parsed, c.text


def test_guided_and_free_are_cached_apart(tiny_model, tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    eng = HFEngine(tiny_model, store=store, quiet=True)
    q = question("mc")
    msgs = [single_messages(q)]
    settings = load_template("single").generation(guided=True)
    free = eng.generate(msgs, n=2, seed=1, **settings)[0]
    calls = eng.forward_calls
    guided = eng.generate(msgs, n=2, seed=1, guide=[single_guide(q)], **settings)[0]
    assert eng.forward_calls > calls  # the free completions were not served for the guided request
    assert store.count() == 4
    assert all(re.fullmatch(single_guide(q), c.text) for c in guided)
    assert any(not re.fullmatch(single_guide(q), c.text) for c in free)  # a random model ignores the format
    calls = eng.forward_calls
    again_free = eng.generate(msgs, n=2, seed=1, **settings)[0]
    again_guided = eng.generate(msgs, n=2, seed=1, guide=[single_guide(q)], **settings)[0]
    assert eng.forward_calls == calls
    assert [c.text for c in again_free] == [c.text for c in free]
    assert [c.text for c in again_guided] == [c.text for c in guided]


def test_guided_sampling_is_batch_invariant(engine):
    qs = QUESTIONS[::3]
    settings = load_template("single").generation(guided=True)
    together = engine.generate(
        [single_messages(q) for q in qs], n=2, seed=3, guide=[single_guide(q) for q in qs], **settings
    )
    alone = [engine.generate([single_messages(q)], n=2, seed=3, guide=[single_guide(q)], **settings)[0] for q in qs]
    assert [[c.text for c in cs] for cs in together] == [[c.text for c in cs] for cs in alone]


def test_guided_logprobs_are_the_masked_renormalised_distribution(engine):
    a, b = question("open", 0), question("mc", 1)
    settings = load_template("pairwise").generation(guided=True)
    ((comp,),) = engine.generate(
        [pairwise_messages(a, b)], n=1, temperature=0.0, logprobs=20, guide=[pairwise_guide(a, b)], **settings
    )
    for tok in comp.logprobs:
        total = sum(math.exp(v) for v in tok.top.values())
        assert total <= 1.0 + 1e-4 and tok.logprob <= 1e-6
    # the forced "Choice: Question " prefix has probability one at every token
    text = ""
    i = 0
    while not text.endswith("Question "):
        assert comp.logprobs[i].logprob == pytest.approx(0.0, abs=1e-5)
        text += comp.logprobs[i].token
        i += 1
    choice = comp.logprobs[i]
    assert set(choice.top) == {"1", "2"}
    assert sum(math.exp(v) for v in choice.top.values()) == pytest.approx(1.0, abs=1e-5)
    # by hand: the model's next-token distribution after the prompt and the forced prefix, restricted to 1 / 2
    ids = engine.prompt_ids(pairwise_messages(a, b)) + engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert engine.tokenizer.decode(ids[-len(engine.tokenizer(text, add_special_tokens=False)["input_ids"]) :]) == text
    with torch.inference_mode():
        logits = engine.model(torch.tensor([ids])).logits[0, -1].float()
    one, two = (engine.tokenizer.convert_tokens_to_ids(t) for t in ("1", "2"))
    p1 = torch.softmax(logits[[one, two]], -1)[0].item()
    parsed = parse_pairwise(comp.text, a, b, logprobs=comp.logprobs)
    assert parsed.p_first == pytest.approx(p1, abs=1e-4)
    assert parsed.choice == (1 if p1 >= 0.5 else 2)  # greedy picks the likelier one


def test_guided_single_rows_get_a_probability_weighted_confidence(engine):
    from metaconf.evaluation import evaluate_single

    rows = evaluate_single(engine, "base", QUESTIONS, Sampling(guided=True, logprobs=5))
    assert len(rows) == len(QUESTIONS) and all(r["parsed"] for r in rows)
    for r in rows:
        assert 0.0 <= r["confidence_expected"] <= 1.0
    free = evaluate_single(engine, "base", QUESTIONS[:2], Sampling(guided=False, logprobs=5))
    assert len(free) == 2 and all("confidence_expected" not in r for r in free)


# -- the real embedded model -----------------------------------------------------------------------------------
BUNDLED = ("mmlu_pro", "mmlu", "gsm8k", "triviaqa", "metamedqa", "medqa", "legalbench", "truthfulqa", "truthfulqa_gen")


@pytest.mark.slow
def test_the_base_embedded_model_under_guidance_always_gives_a_readable_reply():
    """The issue's failure: the base model gave a readable confidence on 0 of 144 questions. Guided: every one."""
    from metaconf.data import load_dataset
    from metaconf.evaluation import evaluate_pairwise, evaluate_single, make_pairs

    engine = HFEngine.embedded(quiet=True)
    for name in BUNDLED:
        qs = load_dataset(name, limit=3)
        single = evaluate_single(engine, "base", qs, Sampling(guided=True, logprobs=5))
        assert all(r["parsed"] and 0 <= r["confidence"] <= 1 for r in single), (name, [r["raw"] for r in single])
        assert all(0 <= r["confidence_expected"] <= 1 for r in single)
        pairs = evaluate_pairwise(engine, "base", make_pairs(qs, 2), {}, Sampling(guided=True, logprobs=5))
        assert all(r["parsed"] and 0 <= r["p_first"] <= 1 for r in pairs), (name, [r["raw"] for r in pairs])
