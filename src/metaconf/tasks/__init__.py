"""The two metacognitive tasks: prompt templates (YAML data) and the parsers that read the model's replies."""

from metaconf.tasks.parsing import (
    VERBAL_CONFIDENCE,
    PairParse,
    SingleParse,
    answer_part,
    choice_probability,
    format_pairwise_target,
    format_single_target,
    parse_answer,
    parse_confidence,
    parse_pairwise,
    parse_single,
)
from metaconf.tasks.templates import (
    Template,
    answer_messages,
    format_choices,
    generation_settings,
    load_template,
    pairwise_messages,
    single_messages,
    template_record,
)

__all__ = [
    "VERBAL_CONFIDENCE",
    "PairParse",
    "SingleParse",
    "Template",
    "answer_messages",
    "answer_part",
    "choice_probability",
    "format_choices",
    "format_pairwise_target",
    "format_single_target",
    "generation_settings",
    "load_template",
    "pairwise_messages",
    "parse_answer",
    "parse_confidence",
    "parse_pairwise",
    "parse_single",
    "single_messages",
    "template_record",
]
