"""ipywidgets explorers. Each has a plain function (run once, for reports and CI, since
widgets render statically under papermill) and an ``interactive_*`` wrapper for learners."""

import html

import torch

from ptlib.analysis import nearest_tokens
from ptlib.data import Fact
from ptlib.errors import PTLibError
from ptlib.generate import generate
from ptlib.model import LM
from ptlib.objective import evaluate
from ptlib.precision import DEFAULT_PRECISION
from ptlib.template import Template

# A named prompt to generate with: its template, and the keyword arguments ``ptlib.generate``
# takes it by ({"deep_prompt": (L, D)}, {"prompt": (L, d)}, or {} for a manual template).
Prompts = dict[str, tuple[str | Template, dict]]


def slot_between_tokens(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
                        position: int, token_a: int, token_b: int, alpha: float) -> dict:
    """Put (1 - alpha) E[a] + alpha E[b] in slot ``position``: loss, EM and nearest tokens."""
    table = lm.embeddings.detach().float()
    prompt = table[slot_ids.to(table.device)].clone()  # (L, d)
    prompt[position] = (1 - alpha) * table[token_a] + alpha * table[token_b]
    result = evaluate(lm, template, facts, prompt=prompt)
    near = nearest_tokens(lm, prompt[position : position + 1], k=3)[0]
    return {"alpha": alpha, "nll": result.nll, "exact_match": result.exact_match, "nearest": near}


def describe_point(point: dict) -> str:
    """One line of text for a ``slot_between_tokens`` result."""
    near = ", ".join(f"{text!r} ({cos:.2f})" for text, cos in point["nearest"])
    return (f"alpha={point['alpha']:.2f}  NLL={point['nll']:.3f}  EM={point['exact_match']:.2f}  "
            f"nearest tokens (cosine): {near}")


def interactive_slot_between_tokens(lm: LM, template: Template, facts: list[Fact],
                                    slot_ids: torch.Tensor, position: int, token_a: int,
                                    token_b: int):
    """A slider over alpha that reruns ``slot_between_tokens`` and prints the result."""
    import ipywidgets

    def show(alpha: float) -> None:
        point = slot_between_tokens(lm, template, facts, slot_ids, position, token_a, token_b,
                                    alpha)
        print(describe_point(point))

    slider = ipywidgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05,
                                    description="alpha", continuous_update=False)
    return ipywidgets.interactive(show, alpha=slider)


def continuations(lm: LM, prompts: Prompts, subjects: list[str], max_new_tokens: int = 8,
                  precision: str = DEFAULT_PRECISION) -> dict[str, list[str]]:
    """What each named prompt makes the model say after each subject, greedily: name -> one
    text per subject (``ptlib.generate``, stopping at a newline)."""
    return {name: generate(lm, template, list(subjects), max_new_tokens=max_new_tokens,
                           precision=precision, **arguments)
            for name, (template, arguments) in prompts.items()}


def generation_table(lm: LM, prompts: Prompts, facts: list[Fact], max_new_tokens: int = 8,
                     precision: str = DEFAULT_PRECISION, width: int = 18) -> str:
    """A text table, one line per fact: the subject, each prompt's continuation (``repr``,
    cut to ``width`` characters) and the expected object."""
    said = continuations(lm, prompts, [fact.x for fact in facts], max_new_tokens, precision)

    def cell(text: str) -> str:
        shown = repr(text)
        return shown if len(shown) <= width else shown[: width - 1] + "…"

    names = list(said)
    lines = [f"{'subject':{width}s}" + "".join(f" {name[:width]:{width}s}" for name in names)
             + " expected"]
    for index, fact in enumerate(facts):
        lines.append(f"{fact.x[:width]:{width}s}"
                     + "".join(f" {cell(said[name][index]):{width}s}" for name in names)
                     + f" {fact.y!r}")
    return "\n".join(lines)


def continuation_text(lm: LM, prompts: Prompts, subject: str, max_new_tokens: int = 8,
                      precision: str = DEFAULT_PRECISION) -> str:
    """One line per named prompt: what the model says after ``subject`` with it; a subject
    the prompts cannot take (empty, say) gives the error's message instead."""
    if not subject.strip():
        return "type a subject (for example a country) and press Enter"
    try:
        said = continuations(lm, prompts, [subject], max_new_tokens, precision)
    except PTLibError as err:
        return f"{type(err).__name__}: {err}"
    width = max(len(name) for name in said)
    return "\n".join(f"{name:{width}s}  {subject} -> {texts[0]!r}"
                     for name, texts in said.items())


def interactive_continuation(lm: LM, prompts: Prompts, subject: str = "",
                             max_new_tokens: int = 8, precision: str = DEFAULT_PRECISION):
    """A text box for a subject and, under it, each prompt's continuation
    (``continuation_text``), recomputed when the subject changes (on Enter or leaving the
    box). Returns the ``VBox`` (text box, output)."""
    import ipywidgets

    box = ipywidgets.Text(value=subject, description="subject", continuous_update=False,
                          placeholder="a subject, e.g. a country")
    shown = ipywidgets.HTML()

    def show(_change=None) -> None:
        text = continuation_text(lm, prompts, box.value, max_new_tokens, precision)
        shown.value = f"<pre>{html.escape(text)}</pre>"

    box.observe(show, names="value")
    show()
    return ipywidgets.VBox([box, shown])
