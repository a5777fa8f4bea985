"""ipywidgets explorers. Each has a plain function (run once, for reports and CI, since
widgets render statically under papermill) and an ``interactive_*`` wrapper for learners."""

import torch

from ptlib.analysis import nearest_tokens
from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import evaluate
from ptlib.template import Template


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
