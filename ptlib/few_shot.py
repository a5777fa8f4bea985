"""Few-shot prompting: k solved train facts before the manual template, scored like any prompt.

A k-shot prompt is itself a manual template. Its fixed text is k solved examples, each the
manual template filled with a train fact's subject and followed by one space and the fact's
object, one example a line, and then the manual template itself::

    The capital of Peru is Lima
    The capital of Japan is Tokyo
    The capital of {x} is

So it is scored by ``ptlib.objective.evaluate`` unchanged, and k = 0 is the manual template
exactly. The k examples are drawn once per seed, from the train facts whose subject is not
among the facts asked (a query never sees its own answer), and every query of the run reads
the same examples. Nothing is trained: the row's trainable parameters and training FLOPs are 0,
and its cost is the longer context every query reads (``FewShotResult.prompt_tokens``).

The template language has no escape: a train fact whose text holds ``{``, ``}`` or a prompt
slot ``[P]`` (or one misspelt, ``[p]``) cannot be written into a template's fixed text and is
refused with a ``TemplateError`` naming it.
"""

import dataclasses
from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.errors import ConfigError, TemplateError
from ptlib.model import LM
from ptlib.objective import Evaluation, evaluate
from ptlib.precision import DEFAULT_PRECISION
from ptlib.template import INPUT, Template, encode_prompt_part, parse_template

SEPARATOR = "\n"  # between solved examples, and between the last one and the query
K_VALUES = (0, 1, 3, 8)  # the reference rows' k


@dataclass
class FewShotResult:
    """One k-shot row: the examples the seed chose, the prompt they made, and its scores."""

    k: int
    seed: int
    examples: list[Fact]     # the k solved train facts, in the order the prompt shows them
    template: str            # the k-shot template text (examples, then the manual template)
    evaluation: Evaluation   # on the asked facts, by ``ptlib.objective.evaluate``
    context_tokens: int      # tokens of the examples and their separators, encoded alone
    prompt_tokens: float     # mean over asked facts of the prompt's tokens (object excluded)
    trainable_parameters: int = 0  # nothing is trained
    train_flops: float = 0.0       # nothing is trained


def manual_template(template: str | Template) -> Template:
    """``template`` parsed, refused with ``TemplateError`` when it has prompt slots."""
    parsed = parse_template(getattr(template, "text", template))
    if parsed.num_slots:
        raise TemplateError(f"template {parsed.text!r} has {parsed.num_slots} [P] slot(s): "
                            "this needs a manual template (fixed text and {x} only)")
    return parsed


def choose_examples(train_facts: list[Fact], k: int, seed: int,
                    exclude_subjects: frozenset[str] = frozenset()) -> list[Fact]:
    """k train facts drawn without replacement by a generator seeded with ``seed``, none whose
    subject is in ``exclude_subjects`` (the facts being asked)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"k must be an integer >= 0, got {k!r}")
    pool = [fact for fact in train_facts if fact.x not in exclude_subjects]
    if k > len(pool):
        raise ConfigError(f"k = {k} solved examples asked for, but only {len(pool)} train "
                          "facts have a subject that is not being asked: use a smaller k or "
                          "more train facts")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))  # (N,)
    return [pool[int(i)] for i in order[:k]]


def solved_example(template: Template, fact: Fact) -> str:
    """The manual template filled with the fact's subject, then one space and its object:
    ``"The capital of Peru is Lima"``. ``TemplateError`` when the text would not stay fixed
    text in a template (it holds ``{``, ``}`` or a slot)."""
    text = template.render(fact.x) + " " + fact.y
    try:
        as_template = parse_template(f"{text} {INPUT}")
    except TemplateError as err:
        raise TemplateError(_unwritable(fact, str(err))) from err
    if as_template.num_slots:
        raise TemplateError(_unwritable(fact, "it holds the prompt slot [P]"))
    return text


def _unwritable(fact: Fact, why: str) -> str:
    return (f"train fact ({fact.x!r}, {fact.y!r}) cannot be a solved example: the template "
            f"language has no escape, and {why}. Leave that fact out of the train facts given "
            "to few-shot")


def few_shot_template(template: str | Template, examples: list[Fact],
                      separator: str = SEPARATOR) -> Template:
    """The k-shot template: each example solved (``solved_example``), one per ``separator``,
    then the manual template. No examples gives the manual template itself."""
    manual = manual_template(template)
    solved = [solved_example(manual, fact) for fact in examples]
    return parse_template("".join(text + separator for text in solved) + manual.text)


def _prompt_lengths(lm: LM, template: Template, facts: list[Fact]) -> list[int]:
    """Tokens of the prompt part (template filled with the subject) of each fact: (N,)."""
    pad = lm.tokenizer.pad_token_id
    return [len(encode_prompt_part(lm.tokenizer, pad, template, f.x)[0]) for f in facts]


def few_shot(lm: LM, template: str | Template, train_facts: list[Fact], facts: list[Fact],
             k: int, seed: int = 0, separator: str = SEPARATOR, batch_size: int = 32,
             precision: str = DEFAULT_PRECISION) -> FewShotResult:
    """Score ``facts`` under the manual ``template`` preceded by ``k`` solved train facts
    chosen by ``seed`` (see the module docstring). ``k=0`` is ``evaluate`` of the manual
    template itself."""
    exclude = frozenset(f.x for f in facts)
    examples = choose_examples(train_facts, k, seed, exclude)
    shot = few_shot_template(template, examples, separator)
    evaluation = evaluate(lm, shot, facts, batch_size=batch_size, precision=precision)
    context = shot.text[: len(shot.text) - len(manual_template(template).text)]
    lengths = _prompt_lengths(lm, shot, facts)
    return FewShotResult(k, seed, examples, shot.text, evaluation,
                         len(lm.tokenizer(context, add_special_tokens=False).input_ids),
                         sum(lengths) / len(lengths))


def few_shot_rows(lm: LM, template: str | Template, train_facts: list[Fact],
                  facts: list[Fact], ks: tuple[int, ...] = K_VALUES,
                  seeds: tuple[int, ...] = (0,), **options) -> list[FewShotResult]:
    """``few_shot`` for every k in ``ks`` and seed in ``seeds``, k-major. k = 0 draws nothing,
    so it is scored once and repeated under each seed. ``options`` go to ``few_shot``."""
    rows = []
    for k in ks:
        first = few_shot(lm, template, train_facts, facts, k, seeds[0], **options)
        rows.append(first)
        for seed in seeds[1:]:
            rows.append(dataclasses.replace(first, seed=seed) if k == 0 else
                        few_shot(lm, template, train_facts, facts, k, seed, **options))
    return rows
