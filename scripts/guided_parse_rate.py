"""How often the base embedded model's reply can be read, guided vs free: a confidence (single) and a choice
(pairwise) on N held-out questions of each training dataset of the demo. Prints one line per dataset and format.

    python scripts/guided_parse_rate.py [--n 24] [--datasets mmlu_pro gsm8k triviaqa]
"""

from __future__ import annotations

import argparse
import json

from metaconf.data import load_dataset
from metaconf.engines.hf import HFEngine
from metaconf.evaluation import evaluate_pairwise, evaluate_single, make_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--datasets", nargs="+", default=["mmlu_pro", "gsm8k", "triviaqa"])
    parser.add_argument("--formats", nargs="+", default=["guided", "free"])
    args = parser.parse_args()
    engine = HFEngine.embedded(quiet=True)
    results = []
    for name in args.datasets:
        qs = load_dataset(name, limit=args.n)
        pairs = make_pairs(qs, args.n)
        for fmt in args.formats:
            guided = fmt == "guided"
            single = evaluate_single(engine, "base", qs, guided=guided, logprobs=5)
            pair = evaluate_pairwise(engine, "base", pairs, {}, guided=guided, logprobs=5)
            row = {
                "dataset": name,
                "format": fmt,
                "questions": len(single),
                "confidence_read": sum(r["confidence"] is not None for r in single),
                "single_parsed": sum(r["parsed"] for r in single),
                "pairs": len(pair),
                "choice_read": sum(r["choice"] is not None for r in pair),
                "pair_parsed": sum(r["parsed"] for r in pair),
                "accuracy": round(sum(r["correct"] for r in single) / len(single), 3),
                "example": single[0]["raw"],
            }
            results.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
