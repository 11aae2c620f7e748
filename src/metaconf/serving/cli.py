"""`metaconf ask --run RUN --condition NAME "QUESTION"` (answer + stated confidence from a run's model) and
`metaconf serve --run RUN --condition NAME` (the same over an OpenAI-compatible HTTP API)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metaconf.flags import Command
from metaconf.serving.server import ServeOptions


class AskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, description="The question (free text, open answer).")
    run: Path = Field(description="A run folder made by `metaconf run` / `metaconf demo`.")
    condition: str = Field("multitask", description="Which condition answers.")
    file: Path | None = Field(None, description="A .jsonl / .json / .csv / .parquet file of questions.")
    field: list[str] = Field(
        [],
        description="Field mapping for --file as KEY=VALUE, e.g. question=prompt "
        "choices=options answer_type=mc (keys as in load_dataset).",
    )
    out: Path | None = Field(None, description="With --file: write one JSON object per line here.")
    as_json: bool = Field(False, alias="json", description='Print {"answer": str, "confidence": float} per question.')
    calibrated: bool = Field(
        False, description="Map the stated confidence through the run's fitted recalibration (base condition)."
    )
    calibration: Literal["isotonic", "platt"] = Field("isotonic", description="Which fitted map --calibrated applies.")
    quiet: bool = Field(False, description="No progress bars.")


def _mapping(pairs: list[str]) -> dict[str, str]:
    from metaconf.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--field {pair!r}: expected KEY=VALUE, e.g. question=prompt")
        out[key.strip()] = value.strip()
    return out


def _ask(args: AskOptions) -> int:
    from metaconf.errors import ConfigError
    from metaconf.io import write_jsonl
    from metaconf.serving.ask import ask

    if (args.question is None) == (args.file is None):
        raise ConfigError("ask: give one QUESTION or --file, not both and not neither")
    if args.out and not args.file:
        raise ConfigError("ask: --out needs --file")
    if args.file:
        from metaconf.data.files import load_file

        questions = load_file(str(args.file), answers_required=False, **_mapping(args.field))
    else:
        questions = [args.question]
    results = ask(
        args.run, args.condition, questions, calibrated=args.calibrated, calibration=args.calibration, quiet=args.quiet
    )
    if args.out:
        write_jsonl(args.out, [r.to_json() for r in results])
        print(f"wrote {len(results)} answers to {args.out}", file=sys.stderr)
        return 0
    for r in results:
        if args.as_json or args.file:
            print(
                json.dumps(
                    r.to_json() if args.file else {"answer": r.answer or "", "confidence": r.confidence},
                    ensure_ascii=False,
                )
            )
        else:
            conf = "not stated" if r.confidence is None else f"{r.confidence * 100:.0f}%"
            label = " (calibrated)" if r.calibration else ""
            print(f"Answer: {r.answer or '(no answer read)'}\nConfidence{label}: {conf}")
    return 0


def _serve(args: ServeOptions) -> int:
    from metaconf.serving.server import serve

    return serve(args)


COMMANDS = [
    Command(
        "ask",
        help="ask a run's model (one condition) a question: answer + stated confidence",
        description="Answer questions with one condition of a run (base, or a trained adapter / hosted model) "
        "through the run's engine, template and completion store. One QUESTION, or --file with a batch (fields "
        "mapped as in load_dataset; a gold answer is optional and, when given, graded).",
        options=AskOptions,
        positional=("question",),
        run=_ask,
    ),
    Command(
        "serve",
        help="serve a run's model (one condition) over an OpenAI-compatible API, with calibrated confidence",
        description="Answer chat completion requests (POST /v1/chat/completions; GET /v1/models, GET /health) "
        "with one condition of a run, through the run's engine and reply format. Each response carries a "
        "`metaconf` object (confidence, stated_confidence, calibrated, abstained, condition). Requests that "
        "arrive together are answered in one engine call. Listens on 127.0.0.1 unless --host says otherwise; "
        "with METACONF_SERVE_TOKEN set, requests need `Authorization: Bearer <token>`. See docs/serve.md.",
        options=ServeOptions,
        run=_serve,
    ),
]
