"""bf16 vs fp32 numerics on the demo's evaluation questions with the embedded model (greedy decoding).

The demo's held-out (in-domain) and new-domain questions (`metaconf demo`'s data stage, seed 0), the first
--per-dataset of each of its six evaluation datasets (default 8: 48 questions; 0: all 144). For each dtype the
embedded model answers every question greedily, twice: the answer-only prompt (the consistency task) and the
single prompt (answer + confidence, the evaluation task; --answer-only skips it). Reported per dtype: time, answer
parse rate, accuracy, confidence parse rate; across dtypes: the share of questions whose extracted answers agree
(target >= 95%), whose raw replies are identical, and the mean |confidence difference|. With --calibration N, also
the demo's consistency targets on its first N training questions (10 samples at T=1 each) and the calibration map
fitted on them, per dtype, and how far the two maps' bin targets are apart (sampled, so they differ by sampling
noise too).

    python benchmarks/compare_dtypes.py [--per-dataset 8] [--dtypes float32,bfloat16] [--store FILE] [--json OUT]
        [--threads N]

bf16 on a CPU without bf16 units (AVX2) is emulated and several times slower than fp32: keep --per-dataset small
there. --store keeps the completions, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def demo_data() -> tuple[Any, list, dict[str, list]]:
    """The demo's config, training questions and evaluation sets (held-out + new-domain), as its data stage draws
    them."""
    import tempfile

    from metaconf.study.config import load_config
    from metaconf.study.runner import Study

    config = load_config(Path(__file__).resolve().parents[1] / "src" / "metaconf" / "study" / "demo.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        study = Study(config, tmp, quiet=True)
        study.stage_data()
    return config, study.train_questions, study.eval_sets


def calibration(engine: Any, config: Any, questions: list) -> dict[str, Any]:
    """The demo's consistency sampling (n samples at T=1) on `questions` and the calibration map fitted on it."""
    from metaconf.targets import sample_consistency
    from metaconf.targets.calibration import CalibrationMap
    from metaconf.tasks.sampling import Sampling

    t = config.targets
    records = sample_consistency(engine, questions, t.n_samples, Sampling(temperature=t.temperature, seed=t.seed))
    cmap = CalibrationMap.fit(records, t.n_bins, False, t.min_bin_count)
    return {
        "consistency": [r.consistency for r in records],
        "accuracy": round(cmap.pooled_accuracy, 3),
        "parse_rate": round(sum(r.parse_rate for r in records) / len(records), 3),
        "map_targets": [round(x, 3) for x in cmap.pooled.target],
        "map_counts": cmap.pooled.count,
    }


def answer_rows(engine: Any, questions: list) -> list[dict[str, Any]]:
    """Greedy answer-only replies (the consistency task's prompt) and their extracted answers."""
    from metaconf.grading import extract_answer, is_correct
    from metaconf.tasks.templates import answer_messages, load_template

    t = load_template("answer")
    out = engine.generate(
        [answer_messages(q, t) for q in questions],
        n=1,
        temperature=0.0,
        max_new_tokens=t.max_new_tokens,
        stop=list(t.stop),
        desc="answer",
    )
    return [
        {"id": q.id, "raw": c.text, "answer": extract_answer(c.text, q), "correct": is_correct(c.text, q)}
        for q, (c,) in zip(questions, out)
    ]


def run_dtype(
    dtype: str,
    questions: list,
    store: Path | None,
    single_task: bool = True,
    calibration_on: tuple[Any, list] | None = None,
) -> dict[str, Any]:
    from metaconf.engines.hf import HFEngine
    from metaconf.evaluation import evaluate_single

    engine = HFEngine.embedded(dtype=dtype, store=store, quiet=True)
    start = time.perf_counter()
    answers = answer_rows(engine, questions)
    single = evaluate_single(engine, "base", questions) if single_task else []
    seconds = time.perf_counter() - start
    cal = calibration(engine, *calibration_on) if calibration_on else None
    n = len(questions)
    result = {
        "dtype": dtype,
        "seconds": round(seconds, 1),
        "answer_parse_rate": round(sum(r["answer"] is not None for r in answers) / n, 3),
        "answer_accuracy": round(sum(r["correct"] for r in answers) / n, 3),
        "_answers": answers,
        "_single": single,
        "_calibration": cal,
    }
    if cal:
        result["calibration"] = {k: v for k, v in cal.items() if k != "consistency"}
    if single:
        result.update(
            {
                "single_parse_rate": round(sum(r["parsed"] for r in single) / n, 3),
                "single_confidence_read": round(sum(r["confidence"] is not None for r in single) / n, 3),
                "single_accuracy": round(sum(r["correct"] for r in single) / n, 3),
            }
        )
    return result


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How often two dtypes' greedy replies to the same questions agree."""
    n = len(a["_answers"])
    conf = [
        (x["confidence"], y["confidence"])
        for x, y in zip(a["_single"], b["_single"])
        if x["confidence"] is not None and y["confidence"] is not None
    ]
    result = {
        "answer_agreement": round(sum(x["answer"] == y["answer"] for x, y in zip(a["_answers"], b["_answers"])) / n, 3),
        "answer_raw_identical": round(sum(x["raw"] == y["raw"] for x, y in zip(a["_answers"], b["_answers"])) / n, 3),
        "disagreements": [
            {"id": x["id"], a["dtype"]: x["raw"], b["dtype"]: y["raw"]}
            for x, y in zip(a["_answers"], b["_answers"])
            if x["answer"] != y["answer"]
        ],
    }
    if a["_calibration"] and b["_calibration"]:
        ca, cb = a["_calibration"], b["_calibration"]
        result["calibration"] = {
            "mean_abs_consistency_diff": round(
                sum(abs(x - y) for x, y in zip(ca["consistency"], cb["consistency"])) / len(ca["consistency"]), 3
            ),
            "max_abs_map_target_diff": round(max(abs(x - y) for x, y in zip(ca["map_targets"], cb["map_targets"])), 3),
        }
    if a["_single"] and b["_single"]:
        result.update(
            {
                "single_answer_agreement": round(
                    sum(x["answer"] == y["answer"] for x, y in zip(a["_single"], b["_single"])) / n, 3
                ),
                "single_raw_identical": round(
                    sum(x["raw"] == y["raw"] for x, y in zip(a["_single"], b["_single"])) / n, 3
                ),
                "mean_abs_confidence_diff": round(sum(abs(x - y) for x, y in conf) / len(conf), 4) if conf else None,
            }
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-dataset", type=int, default=8, help="questions per evaluation dataset (0: all 24)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--store", type=Path, default=None, help="a completions.sqlite to keep (and resume from)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--calibration",
        type=int,
        default=0,
        metavar="N",
        help="also sample the demo's consistency targets (n=10, T=1) on its first N training "
        "questions and fit the calibration map, per dtype (0: skip; the demo uses all 150)",
    )
    parser.add_argument("--answer-only", action="store_true", help="skip the single (answer + confidence) task")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on a loaded shared machine)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from metaconf.precision import BF16_UNITS, choose_dtype, cpu_flags

    config, train, eval_sets = demo_data()
    sets = {name: qs[: args.per_dataset] if args.per_dataset else qs for name, qs in eval_sets.items()}
    questions = [q for qs in sets.values() for q in qs]
    calibration_on = (config, train[: args.calibration]) if args.calibration else None
    runs = []
    for dtype in args.dtypes.split(","):
        runs.append(
            run_dtype(dtype, questions, args.store, single_task=not args.answer_only, calibration_on=calibration_on)
        )
        print(f"{dtype}: {runs[-1]['seconds']} s", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"bf16 units: {sorted(set(BF16_UNITS) & cpu_flags()) or 'none'}",
        "auto_picks": choose_dtype("auto").dtype,
        "questions": {name: len(qs) for name, qs in sets.items()},
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
    }
    if len(runs) == 2:
        result["agreement"] = agreement(*runs)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
