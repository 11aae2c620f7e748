"""The two metacognitive tasks: prompt templates (YAML data), one `Task` per reply format (prompt, guide, parser
and training-target writer, all from one template), and the `Sampling` settings a stage asks with."""

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
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import AnswerTask, PairwiseTask, PTrueTask, SingleTask, Task, Tasks, get_task
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
    "AnswerTask",
    "PTrueTask",
    "PairParse",
    "PairwiseTask",
    "Sampling",
    "SingleParse",
    "SingleTask",
    "Task",
    "Tasks",
    "Template",
    "answer_messages",
    "answer_part",
    "choice_probability",
    "format_choices",
    "format_pairwise_target",
    "format_single_target",
    "generation_settings",
    "get_task",
    "load_template",
    "pairwise_messages",
    "parse_answer",
    "parse_confidence",
    "parse_pairwise",
    "parse_single",
    "single_messages",
    "template_record",
]
