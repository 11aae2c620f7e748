"""Write training sets: HF chat JSONL (what TRL trains on), the hosted fine-tuning chat JSONL, and data cards.

Both formats are validated before anything is written; a bad example is rejected with a message naming the
file, the line and the field. Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metaconf.errors import DataError
from metaconf.io import iter_jsonl_objects, write_json, write_jsonl, write_text_atomic
from metaconf.targets.examples import Example

HOSTED_ROLES = ("system", "user", "assistant")
HOSTED_MIN_EXAMPLES = 10
HOSTED_MAX_TOKENS = 65_536  # per example; estimated at 4 characters per token
HOSTED_MESSAGE_KEYS = {"role", "content", "name", "weight"}


def _check_messages(row: Any, where: str, roles: Sequence[str], hosted: bool) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: must be a JSON object")
    extra = sorted(set(row) - {"messages"})
    if extra and hosted:
        raise DataError(f"{where}: field {extra[0]!r} is not allowed (only 'messages')")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{at}: must be an object")
        if hosted and set(m) - HOSTED_MESSAGE_KEYS:
            raise DataError(f"{at}: field {sorted(set(m) - HOSTED_MESSAGE_KEYS)[0]!r} is not allowed")
        if m.get("role") not in roles:
            raise DataError(f"{at}.role: {m.get('role')!r} is not one of {'/'.join(roles)}")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise DataError(f"{at}.content: must be a non-empty string")
        if m["role"] == "system" and i != 0:
            raise DataError(f"{at}.role: a system message may only come first")
        if hosted and "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1)):
            raise DataError(f"{at}.weight: only assistant messages may carry a weight, and it must be 0 or 1")
    if not any(m["role"] == "user" for m in messages):
        raise DataError(f"{where}: messages: needs a user message")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: messages[{len(messages) - 1}].role: the last message must be the assistant's")
    if hosted and sum(len(m["content"]) for m in messages) / 4 > HOSTED_MAX_TOKENS:
        raise DataError(f"{where}: messages: longer than about {HOSTED_MAX_TOKENS} tokens")


def validate_hf_chat(rows: Sequence[Any], name: str = "train.jsonl") -> None:
    """Check HF chat rows: {"messages": [...]} with system/user/assistant roles, ending with the assistant."""
    for lineno, row in enumerate(rows, 1):
        _check_messages(row, f"{name}:{lineno}", HOSTED_ROLES, hosted=False)


def _validate_hosted_lines(numbered: Sequence[tuple[int, Any]], name: str) -> None:
    if len(numbered) < HOSTED_MIN_EXAMPLES:
        raise DataError(f"{name}: {len(numbered)} examples; hosted fine-tuning needs at least {HOSTED_MIN_EXAMPLES}")
    for lineno, row in numbered:
        _check_messages(row, f"{name}:{lineno}", HOSTED_ROLES, hosted=True)


def validate_hosted(rows: Sequence[Any], name: str = "hosted.jsonl") -> None:
    """Check the hosted (OpenAI chat) fine-tuning format: each line an object with only "messages"; roles
    system/user/assistant; string contents; system only first; ends with the assistant; >= 10 examples."""
    _validate_hosted_lines(list(enumerate(rows, 1)), name)


def validate_hosted_file(path: str | Path) -> int:
    """Validate a hosted JSONL file on disk, errors naming `FILE:LINE`; returns the number of examples."""
    if not Path(path).is_file():
        raise DataError(f"{path}: hosted training file not found")
    numbered = list(iter_jsonl_objects(path))
    _validate_hosted_lines(numbered, str(path))
    return len(numbered)


def hf_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [{"messages": ex.messages} for ex in examples]


def hosted_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [{"messages": [{"role": m["role"], "content": m["content"]} for m in ex.messages]} for ex in examples]


def data_card(name: str, examples: Sequence[Example], n_bins: int = 10) -> dict[str, Any]:
    """Counts per task, domain, dataset and consistency bin, a target histogram, and the pairs' label balance."""
    singles = [e.meta for e in examples if e.task == "single"]
    pairs = [e.meta for e in examples if e.task == "pairwise"]
    hist = [0] * 10
    for m in singles:
        hist[min(int(m["target"] * 10 + 1e-9), 9)] += 1
    domains: Counter[str] = Counter(m["domain"] for m in singles)
    datasets: Counter[str] = Counter(m["dataset"] for m in singles)
    bins: Counter[int] = Counter(m["bin"] for m in singles)
    for m in pairs:
        domains.update([m["domain1"], m["domain2"]])
        datasets.update([m["dataset1"], m["dataset2"]])
        bins.update([m["bin1"], m["bin2"]])
    return {
        "name": name,
        "n_examples": len(examples),
        "n_single": len(singles),
        "n_pairwise": len(pairs),
        "questions_per_domain": dict(sorted(domains.items())),
        "questions_per_dataset": dict(sorted(datasets.items())),
        "questions_per_bin": {str(k): bins.get(k, 0) for k in range(n_bins)},
        "single_target_histogram": {
            f"[{k / 10:.1f}, {(k + 1) / 10:.1f}{']' if k == 9 else ')'}": hist[k] for k in range(10)
        },
        "single_modal_accuracy": (sum(m["modal_correct"] for m in singles) / len(singles)) if singles else None,
        "pairs_choice_1": sum(m["choice"] == 1 for m in pairs),
        "pairs_choice_2": sum(m["choice"] == 2 for m in pairs),
        "pairs_within_domain": sum(m["domain1"] == m["domain2"] for m in pairs),
        "pairs_across_domain": sum(m["domain1"] != m["domain2"] for m in pairs),
    }


def card_markdown(card: dict[str, Any], calibration_table: str | None = None) -> str:
    """The data card as short markdown."""

    def table(title: str, counts: dict[str, Any]) -> list[str]:
        return [f"\n### {title}\n", "| | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in counts.items()]]

    acc = card["single_modal_accuracy"]
    lines = [
        f"# Training set `{card['name']}`\n",
        *([f"**Empty: {card['empty']}**\n"] if card.get("empty") else []),
        f"- examples: {card['n_examples']} ({card['n_single']} single, {card['n_pairwise']} pairwise)",
        f"- modal-answer accuracy of the single examples: {'-' if acc is None else f'{acc:.3f}'}",
        f"- pairs: choice 1 = {card['pairs_choice_1']}, choice 2 = {card['pairs_choice_2']}; "
        f"within-domain {card['pairs_within_domain']}, across-domain {card['pairs_across_domain']}",
    ]
    lines += table("Questions per domain", card["questions_per_domain"])
    lines += table("Questions per dataset", card["questions_per_dataset"])
    lines += table("Questions per consistency bin", card["questions_per_bin"])
    lines += table("Single-example target confidence", card["single_target_histogram"])
    if calibration_table:
        lines += ["\n### Calibration map (fitted on all training questions)\n", calibration_table]
    return "\n".join(lines) + "\n"


def write_training_set(
    folder: str | Path,
    name: str,
    examples: Sequence[Example],
    n_bins: int = 10,
    calibration_table: str | None = None,
    empty_reason: str | None = None,
) -> dict[str, Any]:
    """Validate, then write train.jsonl, hosted.jsonl, examples.jsonl (meta per line), card.md and card.json.
    hosted.jsonl is skipped (with the reason in the card) when the set is too small for hosted fine-tuning; an
    empty set writes only its card, with `empty` saying why (callers skip training that condition)."""
    folder = Path(folder)
    if not examples:  # e.g. no pair meets the gap: say so in the card, leave no stale or empty train file
        for stale in ("train.jsonl", "hosted.jsonl", "examples.jsonl"):
            (folder / stale).unlink(missing_ok=True)
        card = {
            **data_card(name, [], n_bins),
            "hosted": "not written: no examples",
            "empty": empty_reason or "no examples",
        }
        write_json(folder / "card.json", card)
        write_text_atomic(folder / "card.md", card_markdown(card, calibration_table))
        return card
    hf, hosted = hf_rows(examples), hosted_rows(examples)
    validate_hf_chat(hf, f"{folder / 'train.jsonl'}")
    card = data_card(name, examples, n_bins)
    try:
        validate_hosted(hosted, f"{folder / 'hosted.jsonl'}")
        card["hosted"] = "hosted.jsonl"
    except DataError as exc:
        if len(hosted) >= HOSTED_MIN_EXAMPLES:
            raise
        card["hosted"] = f"not written: {exc}"
        (folder / "hosted.jsonl").unlink(missing_ok=True)
    else:
        write_jsonl(folder / "hosted.jsonl", hosted)
    write_jsonl(folder / "train.jsonl", hf)
    write_jsonl(folder / "examples.jsonl", [{"task": e.task, **e.meta} for e in examples])
    write_json(folder / "card.json", card)
    write_text_atomic(folder / "card.md", card_markdown(card, calibration_table))
    return card
