"""The notebooks' exercise checks: for every build-it exercise, the worked solution (read from the
cells tagged ``solution`` in notebooks/solutions/) passes, a placeholder is "not answered yet",
and deliberately wrong answers fail with a message that does not give the answer away. Tiny
random-init model only; the solutions notebooks themselves run under nbval with SmolLM2."""

import math
import re
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

import ptlib
from ptlib import discrete, proposers
from ptlib.course import exercises
from ptlib.course.exercises import ExerciseFailed
from ptlib.deep_prompt import deep_shape
from ptlib.template import encode_target, parse_template

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Cuba", "Havana"),
            ("Spain", "Madrid"), ("Italy", "Rome"), ("Chile", "Santiago"), ("Egypt", "Cairo")]


def solutions(number: str) -> dict:
    """Run the cells tagged ``solution`` of one solutions notebook; return what they define."""
    notebook = nbformat.read(SOLUTIONS / f"{number}_solutions.ipynb", as_version=4)
    namespace = {"math": math, "torch": torch, "nn": nn, "ptlib": ptlib}
    cells = [c for c in notebook.cells if "solution" in c.metadata.get("tags", [])]
    assert cells, f"no solution cells in {number}_solutions.ipynb"
    for cell in cells:
        exec(compile(cell.source, f"{number}_solutions", "exec"), namespace)  # noqa: S102
    return namespace


def placeholder(*_args):
    return None  # what the notebooks' answer cells hold


def fails(check, *args, match: str | None = None, **kwargs) -> str:
    with pytest.raises(ExerciseFailed, match=match) as caught:
        check(*args, **kwargs)
    return str(caught.value)


@pytest.fixture
def capital_list() -> list[ptlib.Fact]:
    return [ptlib.Fact(x, y) for x, y in CAPITALS]


def test_every_notebook_has_checked_exercises_and_a_build_it_one():
    names = set(dir(exercises))
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells
                 if "exercise" in c.metadata.get("tags", [])]
        titles = [c.source for c in cells if c.cell_type == "markdown"
                  and c.source.startswith("**Exercise") and "(open)" not in c.source[:40]]
        assert 2 <= len(titles) <= 4, path.name
        assert any("(build it)" in t[:40] for t in titles), path.name
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        called = re.findall(r"course\.exercises\.(\w+)\(", code)
        assert len(called) == len(titles), path.name
        assert set(called) <= names, path.name
        assert "expected" not in code, f"{path.name}: an exercise cell computes an answer"
        assert (SOLUTIONS / f"{path.name[:2]}_solutions.ipynb").is_file(), path.name


# ------------------------------------------------------------------ 00


def test_00_objective_from_logits(tiny, capital_list, capsys):
    template = parse_template("The capital of {x} is")
    check = exercises.check_target_scores
    assert check(solutions("00")["score_by_hand"], tiny, template, capital_list) is True
    assert "correct" in capsys.readouterr().out
    assert check(placeholder, tiny, template, capital_list) is False
    assert "not answered yet" in capsys.readouterr().out

    def no_mask(logits, target_ids, target_mask):
        logp = torch.log_softmax(logits, -1).gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
        return logp.sum(1), (logits.argmax(-1) == target_ids).all(1)

    def padding_counts_for_exact(logits, target_ids, target_mask):
        logprob, _ = solutions("00")["score_by_hand"](logits, target_ids, target_mask)
        return logprob, (logits.argmax(-1) == target_ids).all(1)

    message = fails(check, no_mask, tiny, template, capital_list, match="logprob")
    assert "the objective from logits" in message and "max |difference|" in message
    fails(check, padding_counts_for_exact, tiny, template, capital_list, match="exact")
    fails(check, lambda *a: (1, 2, 3), tiny, template, capital_list, match="pair")


def test_00_values(tiny, capital_list):
    count = len(encode_target(tiny.tokenizer, "William Shakespeare"))
    assert exercises.check_target_length(count, tiny.tokenizer, "William Shakespeare")
    fails(exercises.check_target_length, count - 1, tiny.tokenizer, "William Shakespeare")
    assert exercises.check_target_length(None, tiny.tokenizer, "x") is False
    text = "{x} has its capital in"
    exact_match = ptlib.evaluate(tiny, parse_template(text), capital_list).exact_match
    assert exercises.check_template_exact_match(exact_match, tiny, text, capital_list)
    fails(exercises.check_template_exact_match, exact_match + 0.5, tiny, text, capital_list)
    fails(exercises.check_template_exact_match, "0.5", tiny, text, capital_list, match="number")


# ------------------------------------------------------------------ 01


def test_01_path_between_two_tokens(tiny):
    path_between = solutions("01")["path_between"]
    alphas = torch.linspace(0, 1, 9)
    check = exercises.check_path
    assert check(path_between, tiny, 65, 70, alphas) is True
    assert check(placeholder, tiny, 65, 70, alphas) is False

    def reversed_path(E, a, b, alphas):
        return path_between(E, b, a, alphas)

    def first_token_only(E, a, b, alphas):
        points, snapped = path_between(E, a, b, alphas)
        return points, torch.full_like(snapped, a)

    fails(check, reversed_path, tiny, 65, 70, alphas, match="points")
    fails(check, first_token_only, tiny, 65, 70, alphas, match="nearest")


def test_01_values(tiny):
    length = max(n for n in range(1, 200) if tiny.vocab_size**n < 10**100)
    assert exercises.check_googol_length(length, tiny.vocab_size)
    fails(exercises.check_googol_length, length + 1, tiny.vocab_size)
    rows = ptlib.manual_prompts(tiny, ptlib.load_task("antonym"), split="dev")
    spread = max(r["exact_match"] for r in rows) - min(r["exact_match"] for r in rows)
    assert exercises.check_template_spread(spread, tiny, "antonym", "dev")
    fails(exercises.check_template_spread, spread + 0.25, tiny, "antonym", "dev")
    assert exercises.check_template_spread(None, tiny, "antonym", "dev") is False


# ------------------------------------------------------------------ 02


@pytest.fixture
def hotflip_setup(tiny, capital_list):
    template = parse_template("[P] {x}[P][P]", require_slots=True)
    allowed = discrete.allowed_tokens(tiny, [f.y for f in capital_list])
    start = torch.tensor([ord("t") + 2, ord("h") + 2, ord("e") + 2])  # byte ids of the tiny LM
    grad = proposers.slot_gradient(tiny, template, capital_list, start)
    return template, allowed, start, grad


def test_02_hotflip_for_every_slot(tiny, hotflip_setup):
    _, allowed, _, grad = hotflip_setup
    hotflip = solutions("02")["hotflip_all_slots"]
    check = exercises.check_hotflip
    assert check(hotflip, tiny, grad, allowed, 5) is True
    for slot in range(len(grad)):  # the reference the check uses is the library's
        library = proposers.hotflip_candidates(tiny, grad[slot], allowed, 5)
        assert torch.equal(hotflip(tiny.embeddings.detach().float(), grad, allowed, 5)[slot],
                           library)
    assert check(placeholder, tiny, grad, allowed, 5) is False

    def plus_gradient(E, grad, allowed, k):
        return hotflip(E, -grad, allowed, k)

    def no_mask(E, grad, allowed, k):
        return hotflip(E, grad, torch.ones_like(allowed), k)

    def worst_first(E, grad, allowed, k):
        return hotflip(E, grad, allowed, k).flip(1)

    fails(check, plus_gradient, tiny, grad, allowed, 5, match="largest")
    fails(check, no_mask, tiny, grad, allowed, 5, match="not allowed")
    fails(check, worst_first, tiny, grad, allowed, 5, match="order")
    fails(check, lambda E, g, a, k: hotflip(E, g, a, k)[0], tiny, grad, allowed, 5,
          match="shape")


def test_02_local_optimum(tiny, capital_list, hotflip_setup):
    template, allowed, start, _ = hotflip_setup
    is_local_optimum = solutions("02")["is_local_optimum"]
    check = exercises.check_local_optimum
    args = (tiny, template, capital_list, start, allowed)
    assert check(is_local_optimum, *args) is True
    assert check(placeholder, *args) is False
    fails(check, lambda *a: True, *args, match="wrong for")  # the check holds improving swaps
    fails(check, lambda *a: False, *args, match="no swap helps")  # and an optimum

    def first_slot_only(lm, template, facts, slot_ids, candidates):
        only_first = candidates.clone()
        only_first[1:] = slot_ids[1:].unsqueeze(1)  # swaps in the other slots change nothing
        return is_local_optimum(lm, template, facts, slot_ids, only_first)

    def answers_a_number(lm, template, facts, slot_ids, candidates):
        return 1.0

    with pytest.raises(ExerciseFailed, match="wrong for"):
        for seed in range(4):  # some seed's improving swap sits in a slot other than 0
            check(first_slot_only, *args, seed=seed)
    fails(check, answers_a_number, *args, match="True or False")


def test_02_capitalised_count(tiny, capital_list):
    gold = [f.y for f in capital_list]
    count = int(discrete.allowed_tokens(tiny, gold, exclude_capitalised=False).sum()
                - discrete.allowed_tokens(tiny, gold).sum())
    assert exercises.check_capitalised_count(count, tiny, gold)
    fails(exercises.check_capitalised_count, count + 1, tiny, gold)


# ------------------------------------------------------------------ 03


def test_03_h0(tiny, capital_list):
    template = parse_template("[P][P] {x}[P]")
    build_h0 = solutions("03")["build_h0"]
    check = exercises.check_h0
    assert check(build_h0, tiny, template, capital_list) is True
    assert check(placeholder, tiny, template, capital_list) is False

    def shared_prompt_only(E, input_ids, slot_index, theta):
        return build_h0(E, input_ids, slot_index, theta if theta.dim() == 2 else theta[0])

    def no_slots(E, input_ids, slot_index, theta):
        return E[input_ids]

    fails(check, shared_prompt_only, tiny, template, capital_list, match="in the slots")
    fails(check, no_slots, tiny, template, capital_list, match="in the slots")


def test_03_training_step(tiny, capital_list):
    template = parse_template("[P][P] {x}[P]")
    train_step = solutions("03")["train_step"]
    check = exercises.check_train_step
    assert check(train_step, tiny, template, capital_list) is True
    assert check(placeholder, tiny, template, capital_list) is False

    def no_zero_grad(lm, batch, theta, optimizer):
        loss = -ptlib.objective.batch_scores(lm, batch, prompt=theta).logprob.mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    def maximises(lm, batch, theta, optimizer):
        optimizer.zero_grad()
        loss = ptlib.objective.batch_scores(lm, batch, prompt=theta).logprob.mean()
        loss.backward()
        optimizer.step()
        return -loss.item()

    def summed_loss(lm, batch, theta, optimizer):
        return train_step(lm, batch, theta, optimizer) * batch.size

    fails(check, no_zero_grad, tiny, template, capital_list, match="step 2.*left over")
    fails(check, maximises, tiny, template, capital_list, match="step 1")
    fails(check, summed_loss, tiny, template, capital_list, match="mean")


def test_03_snap(tiny):
    snap = solutions("03")["snap"]
    vectors = torch.randn(4, tiny.width, generator=torch.Generator().manual_seed(0))
    check = exercises.check_snap
    assert check(snap, tiny, vectors) is True
    assert check(placeholder, tiny, vectors) is False
    ids, distances = snap(tiny.embeddings.detach().float(), vectors)
    assert torch.equal(ids, ptlib.analysis.nearest_token_ids(tiny, vectors))
    assert torch.allclose(distances, ptlib.analysis.distance_to_vocab(tiny, vectors), atol=1e-4)

    def by_cosine(E, vectors):
        unit = torch.nn.functional.normalize
        ids = (unit(vectors, dim=1) @ unit(E, dim=1).T).argmax(dim=1)
        return ids, (E[ids] - vectors).norm(dim=1)

    def squared(E, vectors):
        ids, distances = snap(E, vectors)
        return ids, distances**2

    fails(check, by_cosine, tiny, vectors, match="cosine")
    fails(check, squared, tiny, vectors, match="distances")


# ------------------------------------------------------------------ 04


def test_04_adamw_by_hand():
    adamw_step = solutions("04")["adamw_step"]
    check = exercises.check_adamw
    assert check(adamw_step) is True
    assert check(placeholder) is False

    def no_bias_correction(theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
        return adamw_step(theta, grad, m, v, 10**6, lr, beta1, beta2, eps, weight_decay)

    def l2_not_decoupled(theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
        return adamw_step(theta, grad + weight_decay * theta, m, v, step, lr, beta1, beta2, eps,
                          0.0)

    fails(check, no_bias_correction, match="step 1")
    fails(check, l2_not_decoupled, match="weight_decay = 0.1")


def test_04_rescaled_init(tiny):
    rescaled = solutions("04")["rescaled_normal"]
    check = exercises.check_rescaled_init
    assert check(rescaled, tiny) is True
    assert check(placeholder, tiny) is False

    def unit_rows(num_slots, E, generator):
        vectors = rescaled(num_slots, E, generator)
        return vectors / vectors.norm(dim=1, keepdim=True)

    def plain_normal(num_slots, E, generator):
        return torch.randn((num_slots, E.shape[1]), generator=generator)

    fails(check, unit_rows, tiny, match="norms")
    fails(check, plain_normal, tiny, match="norms")


# ------------------------------------------------------------------ 05


def test_05_lstm_encoder():
    encoder_cls = solutions("05")["MyLSTMEncoder"]
    check = exercises.check_lstm_encoder
    assert check(encoder_cls, 6, 32, 16) is True

    class Placeholder(nn.Module):
        def __init__(self, num_slots, width, hidden):
            super().__init__()

        def forward(self):
            return None

    assert check(Placeholder, 6, 32, 16) is False
    assert check(None, 6, 32, 16) is False

    class OneDirection(encoder_cls):
        def __init__(self, num_slots, width, hidden):
            super().__init__(num_slots, width, hidden)
            self.lstm = nn.LSTM(width, hidden, num_layers=2, batch_first=True)

    class OtherNames(nn.Module):
        def __init__(self, num_slots, width, hidden):
            super().__init__()
            self.table = nn.Embedding(num_slots, width)

    class NoReLU(encoder_cls):
        def __init__(self, num_slots, width, hidden):
            super().__init__(num_slots, width, hidden)
            self.head[1] = nn.Identity()

    message = fails(check, OneDirection, 6, 32, 16, match="missing")
    assert "reverse" in message
    fails(check, OtherNames, 6, 32, 16, match="seed_embedding")
    fails(check, NoReLU, 6, 32, 16, match="the prompt")


def test_05_moved_positions():
    moved = solutions("05")["moved_positions"]
    check = exercises.check_moved_positions
    assert check(moved) is True
    assert check(placeholder) is False

    def leaves_it_perturbed(encoder, row):
        table = encoder.vectors if hasattr(encoder, "vectors") else encoder.seed_embedding.weight
        with torch.no_grad():
            before = encoder().clone()
            table[row] += 1.0
            change = (encoder() - before).norm(dim=1)
        return [i for i in range(len(change)) if change[i] > 1e-6]

    fails(check, lambda encoder, row: [row], match="lstm")
    fails(check, leaves_it_perturbed, match="put the perturbed row back")


def test_05_lstm_size():
    count = sum(p.numel() for p in ptlib.encoders.LSTMEncoder(
        6, 40, 128, torch.Generator().manual_seed(0)).parameters())
    assert exercises.check_lstm_size(count, 6, 40, hidden=128)
    fails(exercises.check_lstm_size, count - 6 * 40, 6, 40, hidden=128)


# ------------------------------------------------------------------ 06


def test_06_generate_with_a_soft_prompt(tiny, capital_list):
    generate = solutions("06")["generate"]
    template = parse_template("[P][P] {x} [P]")
    prompt = torch.randn(3, tiny.width, generator=torch.Generator().manual_seed(0))
    check = exercises.check_generate
    assert check(generate, tiny, template, prompt, capital_list) is True
    assert check(placeholder, tiny, template, prompt, capital_list) is False
    # The solution agrees with teacher-forced exact match wherever greedy decoding is decisive.
    scored = ptlib.evaluate(tiny, template, capital_list, prompt=prompt)
    for fact, exact in zip(capital_list, scored.exact, strict=True):
        target = encode_target(tiny.tokenizer, fact.y)
        assert (generate(tiny, template, prompt, fact.x, len(target)) == target) == exact

    def no_prompt(lm, template, prompt, subject, n):
        return generate(lm, template, torch.zeros_like(prompt), subject, n)

    source = next(c.source for c in nbformat.read(SOLUTIONS / "06_solutions.ipynb",
                                                   as_version=4).cells
                  if "solution" in c.metadata.get("tags", []))
    namespace = {"torch": torch}
    assert "torch.tensor([token]" in source
    exec(source.replace("torch.tensor([token]", "torch.tensor([0]"), namespace)  # noqa: S102
    feeds_back_padding = namespace["generate"]  # appends the pad embedding, not the token's

    fails(check, no_prompt, tiny, template, prompt, capital_list, match="first token")
    fails(check, feeds_back_padding, tiny, template, prompt, capital_list, match="token 2")
    fails(check, lambda *a: [0], tiny, template, prompt, capital_list, match="tokens for n")


# ------------------------------------------------------------------ 07


def test_07_split_deep_prompt(tiny):
    split = solutions("07")["split_deep_prompt"]
    shape = deep_shape(tiny.model)
    prompt = torch.randn(3, shape.width, generator=torch.Generator().manual_seed(0))  # (L, D)
    check = exercises.check_split_deep_prompt
    args = (prompt, shape.layers, shape.kv_heads, shape.head_dim)
    assert check(split, *args) is True
    assert check(placeholder, *args) is False

    def swapped(*a):  # values where the keys go
        return [(values, keys) for keys, values in split(*a)]

    def all_keys_first(prompt, layers, kv_heads, head_dim):  # [K_0 .. K_n, V_0 .. V_n]
        blocks = prompt.reshape(prompt.shape[0], 2, layers, kv_heads, head_dim)
        blocks = blocks.permute(1, 2, 3, 0, 4)  # (2, layers, h, L, hd)
        return [(blocks[0, layer], blocks[1, layer]) for layer in range(layers)]

    def heads_last(*a):  # (L, h, hd): the virtual tokens not moved behind the heads
        return [(k.transpose(0, 1), v.transpose(0, 1)) for k, v in split(*a)]

    fails(check, swapped, *args, match="layer 0's keys tensor .* differs")
    fails(check, all_keys_first, *args, match="differ")
    fails(check, heads_last, *args, match="has shape")
    fails(check, lambda *a: split(*a)[:-1], *args, match="pairs for")
    fails(check, lambda *a: 3, *args, match="list of")


def test_07_values(tiny):
    encoder = ptlib.build_encoder("prefix_mlp", 3, tiny.embeddings, seed=1,
                                  deep_shape=deep_shape(tiny.model))
    count = sum(p.numel() for p in encoder.parameters())
    assert exercises.check_prefix_mlp_size(count, tiny, 3) is True
    fails(exercises.check_prefix_mlp_size, 3 * deep_shape(tiny.model).width, tiny, 3)
    assert exercises.check_prefix_mlp_size(None, tiny, 3) is False
    modules = ("q_proj", "k_proj", "v_proj", "o_proj")
    for targets in (None, modules):
        adapted, _ = ptlib.lora.adapt(tiny, ptlib.LoRAConfig(r=8, target_modules=targets))
        peft_count = sum(p.numel() for p in adapted.model.parameters() if p.requires_grad)
        assert exercises.check_lora_size(peft_count, tiny, r=8, targets=targets) is True
    fails(exercises.check_lora_size, peft_count // 2, tiny, r=8, targets=modules)
    assert exercises.check_lora_size(None, tiny, r=8) is False


def test_a_wrong_answer_never_shows_the_reference():
    """The messages name what differed, never the reference's value."""
    with pytest.raises(ExerciseFailed) as caught:
        exercises.check_googol_length(3, 49_152)
    assert "21" not in str(caught.value)
