"""Exercise checks on using a trained prompt:
answering with it."""


import torch

from ptlib.course.exercises.core import (
    as_tensor,
    call,
    exercise,
    fail,
)
from ptlib.data import Fact
from ptlib.model import LM
from ptlib.template import Template, encode_target, parse_template


@torch.no_grad()
def _greedy_logits(lm: LM, template: Template, prompt: torch.Tensor, subject: str,
                   tokens: list[int]) -> list[torch.Tensor]:
    """Next-token logits (V,) before each of ``tokens``, with the prompt in the slots."""
    ids, slots = [], []
    for chunk in template.chunks(subject):
        if chunk is None:
            slots.append(len(ids))
            ids.append(lm.tokenizer.pad_token_id)
        else:
            ids.extend(lm.tokenizer(chunk, add_special_tokens=False).input_ids)
    embed = lm.model.get_input_embeddings()
    h0 = embed(torch.tensor(ids, device=lm.device)).clone()  # (T, d)
    h0[slots] = prompt.to(h0)
    whole = torch.cat([h0, embed(torch.tensor(tokens, device=lm.device, dtype=torch.long))])
    logits = lm.model(inputs_embeds=whole.unsqueeze(0)).logits[0].float()  # (T + n, V)
    return list(logits[len(ids) - 1 : len(ids) - 1 + len(tokens)].cpu())


@exercise("answer with a soft prompt")
def check_generate(generate_fn, lm: LM, template: Template, prompt: torch.Tensor,
                   facts: list[Fact], max_facts: int = 4) -> None:
    """``generate_fn(lm, template, prompt (L, d), subject, n)`` -> n greedy token ids, with
    the prompt vectors written into the slots; compared step by step with the model's argmax."""
    template = parse_template(getattr(template, "text", template))
    for first, fact in enumerate(facts[:max_facts]):
        count = len(encode_target(lm.tokenizer, fact.y))
        got = call(generate_fn, lm, template, prompt, fact.x, count, first=first == 0)
        got = [int(t) for t in as_tensor(got, "token ids").reshape(-1).tolist()]
        if len(got) != count:
            fail(f"subject {fact.x!r}: {len(got)} tokens for n = {count}")
        steps = _greedy_logits(lm, template, prompt, fact.x, got)
        for index, (token, logits) in enumerate(zip(got, steps, strict=True)):
            if logits[token] < logits.max() - 1e-4:
                where = "the first token" if index == 0 else f"token {index + 1}"
                hint = ("build H_0 as build_batch does: each text chunk of template.chunks(x) "
                        "tokenised on its own, prompt rows at the slots" if index == 0 else
                        "append the embedding of each chosen token and run again")
                fail(f"subject {fact.x!r}: {where} is not the model's argmax. Hint: {hint}")
