"""Reading HF chat JSONL training files and turning them into TRL's prompt/completion format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.errors import DataError
from metaconf.io import iter_jsonl_objects

ROLES = {"system", "user", "assistant"}


def load_chat_examples(path: str | Path) -> list[list[dict[str, str]]]:
    """The message lists of a `{"messages": [...]}` JSONL file, each ending with the assistant's reply.

    Raises DataError naming the file, line and field on the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: training file not found")
    examples = []
    for lineno, row in iter_jsonl_objects(path):
        where = f"{path}:{lineno}"
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: field 'messages' must be a non-empty list")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{i}] needs 'role' (system/user/assistant) and string 'content'")
            clean.append({"role": m["role"], "content": m["content"]})
        if clean[-1]["role"] != "assistant" or len(clean) < 2:
            raise DataError(f"{where}: 'messages' must end with an assistant reply after a user message")
        examples.append(clean)
    if not examples:
        raise DataError(f"{path}: no training examples")
    return examples


def to_prompt_completion(messages: list[dict[str, str]]) -> dict[str, Any]:
    """Split a conversation into TRL's conversational prompt/completion pair: the loss covers the last reply only."""
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def filter_by_length(
    examples: list[list[dict[str, str]]], tokenizer: Any, max_length: int
) -> tuple[list[list[dict[str, str]]], int]:
    """Examples whose chat-templated length fits `max_length`, and how many were left out."""
    fits = fits_length(examples, tokenizer, max_length)
    kept = [messages for messages, ok in zip(examples, fits) if ok]
    return kept, len(examples) - len(kept)


def fits_length(examples: list[list[dict[str, str]]], tokenizer: Any, max_length: int) -> list[bool]:
    """Per example: does its chat-templated length fit `max_length` tokens?"""
    fits = []
    for messages in examples:
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
            ids = ids["input_ids"]
        fits.append(len(ids) <= max_length)
    return fits
