"""Hostile inputs, round 2 (issue 24), one table per root cause: names that would become paths, commands racing a
live run, numbers without bounds, text that is not text, special files, silently wrong values, a quadratic
pattern, run folders that lie, judge templates, credentials in URLs. Each case ends in one line naming the file,
line or field (or the right value), and no command writes or deletes anything outside its run folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from helpers.study import SMALL, ScriptedStudy
from metaconf import grading
from metaconf.cli import main
from metaconf.data import load_dataset
from metaconf.data.schema import Question
from metaconf.errors import DataError, MetaconfError
from metaconf.grading import extract, normalize
from metaconf.lock import RunLock
from metaconf.names import NAME_MAX, inside, name_problem
from metaconf.study.config import parse_config
from metaconf.tasks import parsing
from metaconf.text import redact

MINIMAL = {
    "model": {"engine": "embedded"},
    "data": {"train": [{"name": "gsm8k", "train": 4, "held_out": 2}]},
    "conditions": ["base"],
}
MC = Question(id="m/1", dataset="m", domain="d", question="q", choices=["a", "b", "c", "d"], answers=["B"],
              answer_type="mc")  # fmt: skip


def _with(**changes):
    return {**MINIMAL, **changes}


def _one_line(capsys, pattern: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("metaconf: error: "), err
    assert re.search(pattern, err), err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished scripted run (base condition only): metrics.json, predictions, baselines, config.yaml."""
    run = tmp_path_factory.mktemp("r2") / "run"
    ScriptedStudy(parse_config({**SMALL, "conditions": ["base"]}), run, quiet=True).run()
    return run


# ------------------------------------------------------------------------------------ 1. names become paths
NAMES = [
    ("../../victim", "path separator"),
    ("x/../../../ESCAPED", "path separator"),
    ("..", "'..'"),
    (".", "'..'"),
    ("a..b", "'..'"),
    ("a\\b", "path separator"),
    ("a\x00b", "printable"),
    ("a\nb", "printable"),
    ("a\udcffb", "printable"),
    ("n" * 300, f"at most {NAME_MAX} characters"),
    ("é" * 50, "bytes in UTF-8"),
    ("", "non-empty"),
    (" padded", "space"),
]


@pytest.mark.parametrize("name,problem", NAMES, ids=[ascii(n)[:30] for n, _ in NAMES])
def test_the_name_rule(name, problem):
    assert problem in (name_problem(name) or "")


@pytest.mark.parametrize("name", ["base", "single", "gsm8k", "mmlu_pro", "my-set.v2", "truthfulqa_gen", "Ünïcode"])
def test_ordinary_names_pass(name):
    assert name_problem(name) is None


# (case, config or argv, error regex); every name field of a study config goes through the one rule
NAME_FIELDS = [
    (
        "eval fields.dataset escaping",
        _with(
            data={**MINIMAL["data"], "eval": [{"name": "FILE", "n": 2, "fields": {"dataset": "x/../../../ESCAPED"}}]}
        ),
        r"field 'data\.eval\.0\.fields\.dataset': dataset name 'x/\.\./\.\./\.\./ESC\w*': a name cannot hold a path",
    ),
    (
        "condition named ..",
        _with(conditions=["base", {"name": "..", "training_set": "single"}]),
        r"field 'conditions\.1\.name'",
    ),
    (
        "training set ../x",
        _with(conditions=["base", {"name": "s", "training_set": "../x"}]),
        r"field 'conditions\.1\.training_set': Value error, a name cannot hold a path separator",
    ),
    (
        "targets set named ..",
        _with(targets={"sets": [{"name": "..", "task": "single"}]}),
        r"field 'targets\.sets\.0\.name'",
    ),
    (
        "label of 300 characters",
        _with(data={**MINIMAL["data"], "eval": [{"name": "medqa", "label": "l" * 300}]}),
        r"field 'data\.eval\.0\.label': Value error, a name is at most 64 characters",
    ),
    (
        "study name with NUL, no --out",
        _with(name="a\x00b"),
        r"field 'name': 'a\\x00b' is not a folder name.*pass --out",
    ),
    ("study name of 300, no --out", _with(name="n" * 300), r"field 'name': 'n+' is not a folder name.*pass --out"),
]


@pytest.mark.parametrize("case,raw,error", NAME_FIELDS, ids=[c[0] for c in NAME_FIELDS])
def test_name_fields_of_a_study_config(tmp_path, capsys, monkeypatch, case, raw, error):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n' * 3)
    raw = json.loads(json.dumps(raw).replace('"FILE"', json.dumps(str(data))))
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True))
    before = _snapshot(tmp_path)
    assert main(["run", str(config), "--quiet"]) == 2
    _one_line(capsys, error)
    assert _snapshot(tmp_path) == before  # nothing written: no runs/, no ESCAPED.jsonl


def test_an_out_component_over_255_bytes_is_one_line(tmp_path, capsys):
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(MINIMAL))
    assert main(["run", str(config), "--out", str(tmp_path / ("o" * 300))]) == 2
    _one_line(capsys, r"--out: the component 'o+'\.\.\. is longer than 255 bytes")


def test_train_refuses_a_condition_that_is_a_path(run_dir, capsys):
    victim = run_dir.parent / "victim"
    (victim / "adapter").mkdir(parents=True)
    (victim / "DONE").write_text("x")
    assert main(["train", "--run", str(run_dir), "--conditions", "../../victim"]) == 2
    _one_line(capsys, r"--conditions: Value error, a name cannot hold a path separator")
    assert (victim / "adapter").is_dir() and (victim / "DONE").is_file()


def test_a_bundled_template_name_cannot_be_a_path():
    from metaconf.tasks.templates import load_template

    with pytest.raises(MetaconfError, match=r"not a bundled template's name \(a name cannot hold a path separator"):
        load_template("../../../etc/passwd")


@pytest.mark.parametrize("parts", [("..", "x"), ("a/../../b",), ("ok", "..")])
def test_inside_refuses_what_leaves_the_root(tmp_path, parts):
    with pytest.raises(MetaconfError):
        inside(tmp_path, *parts)


def test_inside_refuses_a_link_out_of_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "predictions").symlink_to(tmp_path)
    with pytest.raises(MetaconfError, match="outside"):
        inside(tmp_path / "root", "predictions", "x.jsonl")
    assert inside(tmp_path / "root", "training", "single") == tmp_path / "root" / "training" / "single"


# --------------------------------------------------------------------------- 2. every writing command takes the lock
LOCKED = [
    ("train", ["train", "--run", "RUN", "--conditions", "single"]),
    ("build-data", ["build-data", "--out", "RUN", "--datasets", "gsm8k"]),
    ("report", ["report", "RUN"]),
    ("evaluate", ["evaluate", "RUN", "--quiet"]),
]


@pytest.mark.parametrize("name,argv", LOCKED, ids=[c[0] for c in LOCKED])
def test_a_command_on_a_folder_held_by_a_live_run_refuses(run_dir, capsys, name, argv):
    before = _snapshot(run_dir, skip=(".lock",))
    lock = RunLock(run_dir)
    lock.acquire()  # flock is per open file: this process's second open (inside the command) is refused too
    try:
        assert main([run_dir.as_posix() if a == "RUN" else a for a in argv]) == 2
    finally:
        lock.release()
    _one_line(capsys, r"in use by another metaconf run \(pid \d+ on host .*\); wait for it to finish")
    assert _snapshot(run_dir) == before


def test_train_keeps_a_finished_adapter_of_other_settings_without_redo(tmp_path, capsys):
    from metaconf.training.lora import train_conditions

    run = tmp_path / "run"
    sets = run / "training_sets" / "single"
    sets.mkdir(parents=True)
    (sets / "train.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n"
    )
    done = run / "training" / "single"
    (done / "adapter").mkdir(parents=True)
    (done / "adapter" / "adapter_config.json").write_text("{}")
    (done / "DONE").write_text("another fingerprint\n")
    with pytest.raises(MetaconfError, match=r"holds a finished adapter trained with other settings or data; pass "
                                            r"--redo"):  # fmt: skip
        train_conditions(run, "embedded", conditions=["single"], redo=False)
    assert (done / "adapter" / "adapter_config.json").is_file() and (done / "DONE").is_file()


# -------------------------------------------------------------------------------------------- 3. upper bounds
BOUNDS = [
    (
        ["--training.lora.rank", "99999999999999999999"],
        r"--training\.lora\.rank: Input should be less than or equal "
        r"to 1024",
    ),  # fmt: skip
    (["--evaluation.n_boot", "1000000000000"], r"--evaluation\.n_boot: Input should be less than or equal to 100000"),
    (["--targets.n_samples", "10000000"], r"--targets\.n_samples: Input should be less than or equal to 1000"),
    (["--evaluation.seed", str(2**64)], r"--evaluation\.seed: Input should be less than or equal to 4294967295"),
    (["--model.options.max_batch_tokens", str(10**12)], r"--model\.options\.max_batch_tokens: Input should be less"),
    (["--training.lora.learning_rate", "5"], r"--training\.lora\.learning_rate: Input should be less than or equal"),
    (["--evaluation.temperature", "1e9"], r"--evaluation\.temperature: Input should be less than or equal to 10"),
]


@pytest.mark.parametrize("flags,error", BOUNDS, ids=[f[0][0] for f in BOUNDS])
def test_numbers_over_their_bound_are_refused_at_load(tmp_path, capsys, flags, error):
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(MINIMAL))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), *flags]) == 2
    _one_line(capsys, error)
    assert not (tmp_path / "out").exists()


def test_train_flags_are_bounded_before_anything_is_deleted(run_dir, capsys):
    assert main(["train", "--run", str(run_dir), "--lora.rank", "99999999999999999999"]) == 2
    _one_line(capsys, r"--lora\.rank: Input should be less than or equal to 1024")


def test_every_number_of_every_command_has_an_upper_bound():
    """Structural: no int / float field of any command's options or config (list items included) is unbounded."""
    from metaconf.cli import commands
    from metaconf.flags import _strip_optional, _union_parts, bounds_text, submodel

    def fields(model, prefix=""):
        for name, info in model.model_fields.items():
            inner, _ = _strip_optional(info.annotation)
            item = (getattr(inner, "__args__", None) or (None,))[0]
            for sub in (submodel(info.annotation), submodel(item) if item else None):
                if sub is not None:
                    yield from fields(sub, f"{prefix}{name}.")
            yield f"{prefix}{name}", info, _union_parts(inner)

    unbounded = []
    for command in commands():
        for model in filter(None, (command.options, command.config)):
            for path, info, parts in fields(model):
                if any(p in (int, float) for p in parts) and "<" not in bounds_text(info):
                    unbounded.append(f"{command.name} {path}")
    from metaconf.engines.options import HFOptions, OpenAIOptions, VLLMOptions

    for options in (HFOptions, OpenAIOptions, VLLMOptions):
        for path, info, parts in fields(options):
            if any(p in (int, float) for p in parts) and "<" not in bounds_text(info):
                unbounded.append(f"{options.__name__} {path}")
    assert not unbounded, unbounded


# ------------------------------------------------------------------------------------- 4. text that is not text
def _data(tmp_path: Path, text: str, suffix: str = ".jsonl") -> Path:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


TEXT = [
    ("question with a lone surrogate", '{"question": "q\\ud800?", "answer": "4"}\n', {},
     r"data\.jsonl:1: field 'question': not valid text \('\\ud800' at character 1 is a lone surrogate\)"),
    ("choice with a lone surrogate", '{"question": "q?", "choices": ["a\\udfff", "b"], "answer": "A"}\n', {},
     r"data\.jsonl:1: field 'choices': not valid text"),
    ("MC answer ²", '{"question": "q?", "choices": ["a", "b", "c"], "answer": "\u00b2"}\n', {},
     r"data\.jsonl:1: answer '²' is not a letter A-C"),
    ("5000-digit integer in JSONL", '{"question": "q?", "answer": ' + "9" * 5000 + "}\n", {},
     r"data\.jsonl:1: invalid JSON \(Exceeds the limit \(4300 digits\)"),
    ("5000-digit MC answer", '{"question": "q?", "choices": ["a", "b"], "answer": "' + "1" * 5000 + '"}\n', {},
     r"data\.jsonl:1: answer '1+' is not a letter A-B"),
]  # fmt: skip


@pytest.mark.parametrize("case,text,opts,error", TEXT, ids=[c[0] for c in TEXT])
def test_text_and_digits_from_data_files(tmp_path, case, text, opts, error):
    path = _data(tmp_path, text, opts.get("suffix", ".jsonl"))
    with pytest.raises(DataError, match=error):
        load_dataset(str(path))


def test_a_5000_digit_csv_list_cell_is_one_answer_not_a_crash(tmp_path):
    path = _data(tmp_path, 'question,answers\nq?,"[' + "9" * 5000 + ']"\n', ".csv")
    (q,) = load_dataset(str(path))
    assert q.answers == ["[" + "9" * 5000 + "]"]  # text that only looks like a list stays one answer


ARGV = [
    ("--name", ["run", "CONFIG", "--name", "a\udcffb"], r"--name: not valid text"),
    ("ask question", ["ask", "--run", "RUN", "--condition", "base", "what\udcff?"], r"--question: not valid text"),
]


@pytest.mark.parametrize("case,argv,error", ARGV, ids=[c[0] for c in ARGV])
def test_undecodable_argv_is_one_line(tmp_path, run_dir, capsys, case, argv, error):
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(MINIMAL))
    argv = [str(config) if a == "CONFIG" else str(run_dir) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    _one_line(capsys, error)
    assert not (run_dir / "config.yaml").read_bytes().count(b"\xed")  # nothing stored


def test_a_yaml_surrogate_escape_in_a_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "X.yaml"
    config.write_text('name: "a\\ud800"\n' + yaml.safe_dump(MINIMAL))
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys, r"X\.yaml: field 'name': not valid text")


# ------------------------------------------------------------------------------------------- 5. special files
def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.jsonl"
    os.mkfifo(path)
    return path


SPECIAL = [
    ("FIFO", _fifo, r"fifo\.jsonl: not a regular file \(a pipe\)"),
    ("link to /dev/zero", lambda t: (t / "zero.jsonl").symlink_to("/dev/zero") or t / "zero.jsonl",
     r"zero\.jsonl: not a regular file \(a device\)"),
]  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize("case,make,error", SPECIAL, ids=[c[0] for c in SPECIAL])
def test_special_files_are_refused_before_reading(tmp_path, run_dir, capsys, case, make, error):
    path = make(tmp_path)
    with pytest.raises(DataError, match=error):
        load_dataset(str(path))
    assert main(["ask", "--run", str(run_dir), "--condition", "base", "--file", str(path)]) == 2
    _one_line(capsys, error)
    assert main(["run", str(path)]) == 2  # as a config file
    _one_line(capsys, error)


def test_a_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    from metaconf import io

    monkeypatch.setattr(io, "MAX_INPUT_BYTES", 100)
    path = _data(tmp_path, '{"question": "q?", "answer": "4"}\n' * 10)
    with pytest.raises(DataError, match=r"data\.jsonl: 340 bytes, more than the 100 a data file may have"):
        load_dataset(str(path))


# ------------------------------------------------------------------------------------- 6. wrong values, silently
GOLDS = [
    ("1e400", r"numeric answer '1e400' is too large to compare \(not finite\)"),
    ("9" * 5000, r"numeric answer '9+' is not a number \(or has over 400 characters\)"),
    ("1,5", r"numeric answer '1,5': a comma only separates thousands \(1,500\); write a decimal point"),
    ("12,34,5", r"numeric answer '12,34,5': a comma only separates thousands"),
    ("1,500", ["1500"]),
    ("-1,234,567.5", ["-1234567.5"]),
    ("$1,000", ["1000"]),
    ("1e3", ["1000"]),
]


@pytest.mark.parametrize("gold,expected", GOLDS, ids=[g[:12] for g, _ in GOLDS])
def test_numeric_golds_are_read_right_or_refused(tmp_path, gold, expected):
    path = _data(tmp_path, json.dumps({"question": "q?", "answer": gold}) + "\n")
    if isinstance(expected, list):
        assert load_dataset(str(path), answer_type="numeric")[0].answers == expected
    else:
        with pytest.raises(DataError, match=r"data\.jsonl:1: " + expected):
            load_dataset(str(path), answer_type="numeric")


def test_a_key_given_twice_in_a_data_object_is_refused(tmp_path):
    path = _data(tmp_path, '{"question": "q?", "answer": "4", "answer": "5"}\n')
    with pytest.raises(DataError, match=r"data\.jsonl:1: invalid JSON \(key 'answer' given twice in one object\)"):
        load_dataset(str(path))


CONFIDENCES = [
    ("Confidence: 1e2%", None),
    ("Confidence: 1E-2", None),
    ("Confidence: \u22125%", None),
    ("Confidence: \u20135%", None),
    ("Confidence: 0x50", None),
    ("Confidence: 0xff", None),
    ("Confidence: -5%", None),
    ("Confidence: 85%", 0.85),
    ("Confidence: 70-80", None),
    ("Confidence: 0.85", 0.85),
    ("Confidence: 8 out of 10", 0.8),
    ("I am 90% confident", 0.9),
]


@pytest.mark.parametrize("text,value", CONFIDENCES, ids=[ascii(t) for t, _ in CONFIDENCES])
def test_parse_confidence_reads_or_refuses(text, value):
    assert parsing.parse_confidence(text) == value


# ------------------------------------------------------------------------------------------ 7. linear grader
PADDING = ["\n", " \n", "\t\n", "\r\n", "\n\u2003", "\n \n", " "]


def _cpu(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        grading.is_correct(text, MC)
        parsing.parse_single(text, MC)
        best = min(best, time.process_time() - start)
    return max(best, 1e-4)


@pytest.mark.parametrize("pad", PADDING, ids=[ascii(p) for p in PADDING])
def test_whitespace_padding_between_tokens_costs_linear_time(pad):
    """8x the padding between 'B' and 'x' costs about 8x the time (it cost 64x: 1.1 s at 10k characters)."""
    small, big = ("B" + pad * (n // len(pad)) + "x" for n in (4_000, 32_000))
    growth = _cpu(big) / _cpu(small)
    assert growth < 24, f"{pad!r}: 8x the text took {growth:.0f}x the time"


def test_no_multiline_pattern_scans_across_line_breaks_from_a_line_start():
    """Structural: a `(?m)^` followed by `\\s*` / `\\s+` restarts a scan over all following blank lines at every
    line start (quadratic); the indent must exclude the line break."""
    import re as re_module

    modules = (extract, normalize, parsing)
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, re_module.Pattern) and value.flags & re_module.MULTILINE:
                assert not re_module.search(r"\^\\s[*+]", value.pattern), f"{module.__name__}.{name}"


# --------------------------------------------------------------------------------- 8. run folders that lie
def _write(path: Path, data: bytes | str) -> None:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _rows(mutate):
    def change(run: Path) -> None:
        metrics = json.loads((run / "metrics.json").read_text())
        mutate(metrics["rows"][0])
        _write(run / "metrics.json", json.dumps(metrics))

    return change


RUN_FILES = [
    ("metrics row without n", _rows(lambda r: r.pop("n")), r"metrics\.json: field 'rows\.0\.n': missing"),
    ("metrics *_ci as text", _rows(lambda r: r.update(accuracy_ci="abc")),
     r"metrics\.json: field 'rows\.0': accuracy_ci: expected \[low, high\] or null"),
    ("metrics value as text", _rows(lambda r: r.update(accuracy="high")),
     r"metrics\.json: field 'rows\.0': accuracy: expected a number or null"),
    ("config.yaml Latin-1", lambda run: _write(run / "config.yaml", b"name: caf\xe9\n"),
     r"config\.yaml:1: not UTF-8 text \(invalid byte at offset 9\)"),
    ("config.yaml data: 5", lambda run: _write(run / "config.yaml", "name: x\ndata: 5\n"),
     r"config\.yaml: field 'data': Input should be a valid dictionary"),
    ("config.yaml a list", lambda run: _write(run / "config.yaml", "- a\n"),
     r"config\.yaml: expected a mapping of settings"),
]  # fmt: skip


@pytest.mark.parametrize("case,mutate,error", RUN_FILES, ids=[c[0] for c in RUN_FILES])
def test_report_names_the_bad_run_file_and_field(run_dir, tmp_path, capsys, case, mutate, error):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    mutate(run)
    assert main(["report", str(run)]) == 2
    _one_line(capsys, error)


RECALIBRATIONS = [("[]", "list"), ('"x"', "str"), ('{"maps": []}', "maps"), ('{"maps": {"base": 5}}', "maps.base")]


@pytest.mark.parametrize("content,_kind", RECALIBRATIONS, ids=[c for c, _ in RECALIBRATIONS])
def test_a_recalibration_file_of_another_shape_is_one_line(tmp_path, content, _kind):
    from metaconf.records import read_recalibration

    path = tmp_path / "recalibration.json"
    path.write_text(content)
    with pytest.raises(DataError, match=r"recalibration\.json: field 'maps(\.base)?': expected an object"):
        read_recalibration(path)


# ------------------------------------------------------------------------------------------ 9. judge templates
TEMPLATES = [
    ("{question} {gold} {answer} {oops}", r"unknown placeholder \{oops\}"),
    ("{question} {gold} {answer} {", r"Single '\{' encountered"),
    ("{question} {gold} {answer} }", r"Single '\}' encountered"),
    ("{question} {gold} {answer:>999999999}", r"placeholder \{answer\} takes no conversion or format spec"),
    ("{question.__class__} {gold} {answer}", r"unknown placeholder \{question\.__class__\}"),
    ("{question} {gold} {answer} {}", r"unknown placeholder \{\}"),
    ("{question} {gold}", r"missing the \{answer\} placeholder"),
]


@pytest.mark.parametrize("template,error", TEMPLATES, ids=[t for t, _ in TEMPLATES])
def test_judge_templates_are_checked_when_the_config_loads(tmp_path, capsys, template, error):
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(_with(grading={"method": "judge", "template": template})))
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys, r"X\.yaml: field 'grading': Value error, template: " + error)


def test_a_template_with_doubled_braces_is_fine():
    from metaconf.grading.judge import template_problem

    assert template_problem('Reply as {{"ok": true}}. Q: {question} Gold: {gold} Answer: {answer}') is None


# ------------------------------------------------------------------------------------ 10. credentials in URLs
URLS = [
    ("http://user:hunter2@127.0.0.1:9/v1", "http://***@127.0.0.1:9/v1"),
    ("https://token@host/v1 and http://a:b@c/", "https://***@host/v1 and http://***@c/"),
    ("http://host/v1?x=a@b", "http://host/v1?x=a@b"),
    ("mail me at a@b.org", "mail me at a@b.org"),
]


@pytest.mark.parametrize("text,shown", URLS, ids=[u for u, _ in URLS])
def test_redact(text, shown):
    assert redact(text) == shown


def test_a_password_in_base_url_is_in_no_message_and_no_file(tmp_path, capsys):
    config = tmp_path / "X.yaml"
    model = {"engine": "openai", "name": "m", "base_url": "http://user:hunter2@127.0.0.1:9/v1",
             "options": {"max_retries": 0}}  # fmt: skip
    config.write_text(yaml.safe_dump(_with(model=model)))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = _one_line(capsys, r"server at http://\*\*\*@127\.0\.0\.1:9/v1 failed")
    assert "hunter2" not in err
    assert main(["demo", "--show-config", "--model.engine", "openai", "--model.name", "m",
                 "--model.base_url", "http://user:hunter2@h/v1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "http://***@h/v1" in out and "hunter2" not in out


# --------------------------------------------------------------- nothing outside the run folder, whatever the input
def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time."""
    found = {}
    for path in root.rglob("*"):
        if path.name in skip:
            continue
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns if path.is_file() else 0)
    return found


HOSTILE = [name for name, _ in NAMES if name] + ["../outside", "../../x", "/tmp/abs"]  # "" falls back to the file name


@pytest.mark.slow  # every command x 16 hostile names, with a scripted run folder to aim at (~40 s)
def test_no_command_touches_anything_outside_its_run_folder(run_dir, tmp_path, capsys, monkeypatch):
    """Every command, given every hostile name from the tables where a name goes: the run folder's parent (with a
    `victim` run beside it) is the same afterwards, except inside the run folder itself."""
    import shutil

    parent = tmp_path / "parent"
    run = parent / "run"
    shutil.copytree(run_dir, run)
    victim = parent / "victim"
    (victim / "adapter").mkdir(parents=True)
    (victim / "DONE").write_text("x")
    (victim / "log.jsonl").write_text("{}\n")
    data = parent / "q.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n' * 3)
    monkeypatch.chdir(parent)
    outside = _snapshot(parent)
    outside = {k: v for k, v in outside.items() if not k.startswith("run/") and k != "run"}
    for name in HOSTILE:
        eval_entry = {"name": str(data), "n": 2, "fields": {"dataset": name}}
        study = _with(name=name, data={**MINIMAL["data"], "eval": [eval_entry]})
        cond = _with(conditions=["base", {"name": name, "training_set": name}])
        for i, raw in enumerate((study, cond)):
            config = run / f"hostile{i}.yaml"
            config.write_text(yaml.safe_dump(raw))
            main(["run", str(config), "--quiet"])
            main(["evaluate", str(run), "--config", str(config), "--quiet"])
        for argv in (
            ["train", "--run", str(run), "--conditions", name],
            ["ask", "--run", str(run), "--condition", name, "2+2?"],
            ["ask", "--run", str(run), "--condition", "base", "--file", str(data), "--field", f"dataset={name}"],
            [
                "build-data",
                "--out",
                str(run),
                "--datasets",
                str(data),
                "--targets.sets",
                json.dumps({"name": name, "task": "single"}),
            ],  # fmt: skip
        ):
            main(argv)
        capsys.readouterr()
    assert main(["report", str(run)]) == 0
    after = {k: v for k, v in _snapshot(parent).items() if not k.startswith("run/") and k != "run"}
    assert after == outside
