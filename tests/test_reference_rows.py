"""The reference rows beside P-Tuning: few-shot prompting (k solved train facts before the
manual template) and LoRA through PEFT, on the tiny model; and the parameter counts and
training FLOPs a table puts beside each row."""

import pytest
import torch
from conftest import CAPITALS, MORE_CAPITALS, make_facts

import ptlib
from ptlib import ConfigError, TemplateError
from ptlib.few_shot import choose_examples, few_shot, few_shot_rows, few_shot_template
from ptlib.flops import run_train_flops, total_parameters, trainable_parameters
from ptlib.model import byte_tokenizer, random_lm
from ptlib.objective import evaluate, make_batch
from ptlib.training import batch_facts

pytest.importorskip("peft")

from ptlib.lora import LoRAConfig, adapt, default_target_modules, seeded, train_lora  # noqa: E402

MANUAL = "The capital of {x} is"
TRAIN = make_facts(CAPITALS)            # 12 train facts: the solved-example pool
ASKED = make_facts(MORE_CAPITALS[:4])   # the facts scored


# --- few-shot --------------------------------------------------------------------------------

def test_zero_shot_is_the_manual_template_exactly(tiny):
    row = few_shot(tiny, MANUAL, TRAIN, ASKED, k=0, precision="fp32")
    assert row.template == MANUAL and row.examples == [] and row.context_tokens == 0
    assert row.evaluation == evaluate(tiny, ptlib.parse_template(MANUAL), ASKED,
                                      precision="fp32")


@pytest.mark.parametrize("k", [1, 3, 8])
def test_k_shot_context_holds_k_solved_train_facts_then_the_template(tiny, k):
    row = few_shot(tiny, MANUAL, TRAIN, ASKED, k=k, seed=3, precision="fp32")
    *examples, query = row.template.split("\n")
    assert query == MANUAL and len(examples) == k == len(row.examples)
    assert examples == [f"The capital of {f.x} is {f.y}" for f in row.examples]
    assert len(set(row.examples)) == k and set(row.examples) <= set(TRAIN)
    assert row.examples == choose_examples(TRAIN, k, seed=3)  # fixed by the seed
    assert row.context_tokens == len(tiny.tokenizer("".join(e + "\n" for e in examples),
                                                    add_special_tokens=False).input_ids)
    assert row.prompt_tokens > row.context_tokens
    assert row.evaluation == evaluate(tiny, ptlib.parse_template(row.template), ASKED,
                                      precision="fp32")


def test_seeds_choose_different_examples():
    chosen = {tuple(choose_examples(TRAIN, 3, seed)) for seed in range(4)}
    assert len(chosen) == 4


def test_a_fact_being_asked_is_never_a_solved_example(tiny):
    pool = TRAIN[:3] + ASKED  # the asked facts are in the pool too: they must be skipped
    for seed in range(5):
        row = few_shot(tiny, MANUAL, pool, ASKED, k=3, seed=seed, precision="fp32")
        assert sorted(f.x for f in row.examples) == sorted(f.x for f in TRAIN[:3])
    with pytest.raises(ConfigError, match="only 3 train facts"):
        few_shot(tiny, MANUAL, pool, ASKED, k=4, precision="fp32")


@pytest.mark.parametrize("fact", [ptlib.Fact("{x}land", "Oz"), ptlib.Fact("Oz", "a}b"),
                                  ptlib.Fact("Oz", "{y}"), ptlib.Fact("[P] land", "Oz"),
                                  ptlib.Fact("[p]", "Oz")],
                         ids=["input", "brace", "placeholder", "slot", "near-slot"])
def test_a_solved_example_that_would_change_the_template_is_refused(fact):
    with pytest.raises(TemplateError, match="cannot be a solved example"):
        few_shot_template(MANUAL, [TRAIN[0], fact])


def test_braces_in_an_asked_subject_are_only_text(tiny):
    asked = [ptlib.Fact("{x} [P]", "Oz")]
    row = few_shot(tiny, MANUAL, TRAIN, asked, k=2, precision="fp32")
    assert row.evaluation.nll > 0


def test_few_shot_refuses_a_template_with_slots_and_a_bad_k(tiny):
    with pytest.raises(TemplateError, match="manual template"):
        few_shot(tiny, "[P] {x} is", TRAIN, ASKED, k=1)
    with pytest.raises(ConfigError, match="k must be"):
        choose_examples(TRAIN, -1, seed=0)


def test_few_shot_rows_cover_k_and_seeds_with_zero_shot_scored_once(tiny):
    rows = few_shot_rows(tiny, MANUAL, TRAIN, ASKED, ks=(0, 1), seeds=(0, 1), precision="fp32")
    assert [(r.k, r.seed) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rows[0].evaluation == rows[1].evaluation
    assert all(r.trainable_parameters == 0 and r.train_flops == 0 for r in rows)


# --- LoRA ------------------------------------------------------------------------------------

def lora_config(**overrides) -> LoRAConfig:
    settings = {"steps": 8, "batch_size": 4, "eval_every": 2, "lr": 1e-2}
    return LoRAConfig(**(settings | overrides))


def run_lora(lm, cfg=None, **kwargs):
    return train_lora(lm, MANUAL, TRAIN[:8], TRAIN[8:], cfg or lora_config(),
                      show_progress=False, **kwargs)


@pytest.fixture(scope="module")
def lora_run():
    """(the LM, its weights before, one LoRA run on it): the LM is a fresh tiny model, so a
    run that changed it in place could not spoil the session's shared one."""
    lm = ptlib.tiny_lm(seed=0)
    before = {name: value.clone() for name, value in lm.model.state_dict().items()}
    return lm, before, run_lora(lm, test_facts=ASKED)


def test_lora_leaves_the_callers_model_bitwise_unchanged(lora_run):
    lm, before, result = lora_run
    after = lm.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert trainable_parameters(lm.model) == 0 and result.lm.model is not lm.model
    assert not any("lora" in name for name, _ in lm.model.named_modules())


def lora_count(config, r: int) -> int:
    """r * (in + out) of q_proj (d -> heads * head_dim) and v_proj (d -> kv_heads * head_dim),
    summed over the layers."""
    d, head_dim = config.hidden_size, config.head_dim
    q = d + config.num_attention_heads * head_dim
    v = d + config.num_key_value_heads * head_dim
    return r * (q + v) * config.num_hidden_layers


def test_trainable_count_is_r_times_in_plus_out_over_the_targets(lora_run):
    lm, _, result = lora_run
    assert result.target_modules == ("q_proj", "v_proj")
    assert result.trainable_parameters == lora_count(lm.model.config, 8) == 1792
    assert result.total_parameters == total_parameters(lm.model) + 1792


def test_lora_count_at_smollm2_shapes():
    """One decoder layer of SmolLM2-135M's shape (d 576, 9 heads, 3 kv heads, head dim 64):
    the count per layer, times its 30 layers, is LoRA r=8 on q and v for the whole model."""
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=258, hidden_size=576, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=9, num_key_value_heads=3,
                         tie_word_embeddings=True, pad_token_id=0)
    lm = random_lm(config, byte_tokenizer())
    with seeded(0, lm.device):
        adapted, _ = adapt(lm, LoRAConfig())
    per_layer = trainable_parameters(adapted.model)
    assert per_layer == lora_count(config, 8) == 15_360
    assert 30 * per_layer == 460_800


def test_lora_reduces_the_train_loss_on_a_full_batch(tiny):
    result = train_lora(tiny, MANUAL, TRAIN[:4], TRAIN[4:6], lora_config(steps=10),
                        show_progress=False)
    assert result.history.loss[-1] < result.history.loss[0]


def test_best_step_is_the_best_dev_score_and_its_state_is_kept(lora_run):
    _, _, result = lora_run
    history = result.history
    scores = list(zip(history.dev_exact_match, [-n for n in history.dev_nll], strict=True))
    best = scores.index(max(scores))  # the first of equals, as training.py keeps it
    assert result.best_step == history.eval_step[best]
    assert history.eval_step == [0, 2, 4, 6, 8]
    kept = result.evaluate(TRAIN[8:])
    assert (kept.exact_match, kept.nll) == (history.dev_exact_match[best], history.dev_nll[best])
    assert result.test == result.evaluate(ASKED)


def test_same_seed_same_run_and_the_global_rng_is_untouched(lora_run, tiny):
    _, _, first = lora_run
    state = torch.get_rng_state()
    again = run_lora(tiny)
    assert torch.equal(torch.get_rng_state(), state)
    assert again.history.loss == first.history.loss
    assert again.history.dev_nll == first.history.dev_nll
    other = run_lora(tiny, lora_config(seed=1))
    assert other.history.loss != first.history.loss


def test_train_flops_replay_the_batches(lora_run):
    lm, _, result = lora_run
    steps = result.history.step[-1]
    template = ptlib.parse_template(MANUAL)
    replayed = run_train_flops(lm, template, TRAIN[:8], result.config, steps,
                               model=result.lm.model, body_trainable=result.trainable_parameters)
    assert result.train_flops == replayed
    frozen = run_train_flops(lm, template, TRAIN[:8], result.config, steps)
    tokens = sum(int(make_batch(lm, template, batch_facts(TRAIN[:8], result.config, s, 0))
                     .attention_mask.sum()) for s in range(steps))
    # each adapter weight: 2 FLOPs a token forward, 2 backward to activations, 2 to itself
    assert replayed - frozen == pytest.approx(6 * result.trainable_parameters * tokens)


def test_trainable_parameters_of_a_prompt_encoder(tiny):
    encoder = ptlib.build_encoder("lstm", 3, tiny.embeddings, 0)
    assert trainable_parameters(encoder) == sum(p.numel() for p in encoder.parameters()) > 0


BAD_LORA = [("precision", "bf16", "fp32"), ("r", 0, "r"), ("dropout", 1.0, "dropout"),
            ("alpha", 0, "alpha"), ("target_modules", "q_proj", "tuple"),
            ("target_modules", (), "at least one"), ("steps", 0, "steps")]


@pytest.mark.parametrize(("field", "value", "match"), BAD_LORA,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_LORA])
def test_bad_lora_config_raises_config_error(field, value, match):
    with pytest.raises(ConfigError, match=match):
        LoRAConfig(**{field: value})


def test_lora_config_takes_a_list_of_targets_from_json():
    assert LoRAConfig(target_modules=["q_proj", "k_proj"]).target_modules == ("q_proj", "k_proj")


def test_lora_refuses_targets_the_model_lacks_and_slots_and_big_batches(tiny):
    with pytest.raises(ConfigError, match="c_attn"):
        run_lora(tiny, lora_config(target_modules=("c_attn",)))
    with pytest.raises(TemplateError, match="manual template"):
        train_lora(tiny, "[P] {x}", TRAIN[:8], TRAIN[8:], lora_config(), show_progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        run_lora(tiny, lora_config(batch_size=9))


def test_default_targets_per_family():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50,
                                      bos_token_id=0, eos_token_id=0))
    assert default_target_modules(gpt2) == ("c_attn",)

    class NoAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 4))])

    with pytest.raises(ConfigError, match="target_modules"):
        default_target_modules(NoAttention())


def test_lora_starts_at_the_frozen_model_exactly(lora_run, tiny):
    """B is zero at the start, so the step-0 dev score is the manual template's own."""
    _, _, result = lora_run
    manual = evaluate(tiny, ptlib.parse_template(MANUAL), TRAIN[8:], precision="fp32")
    assert (result.history.dev_exact_match[0], result.history.dev_nll[0]) == \
        (manual.exact_match, manual.nll)


def test_adapter_dropout_is_seeded_and_off_outside_training(tiny):
    runs = [run_lora(tiny, lora_config(dropout=0.5, steps=4)) for _ in range(2)]
    assert runs[0].history.loss == runs[1].history.loss
    dropouts = [m for n, m in runs[0].lm.model.named_modules() if n.endswith("lora_dropout")]
    assert dropouts and not any(m.training for m in dropouts)


def test_run_train_flops_follow_gradient_accumulation(tiny):
    """Micro-batches follow one another through the epochs, so 1 step of 2 micro-batches
    reads the same facts as 2 steps of 1."""
    template = ptlib.parse_template("[P] {x} [P]")
    flops = [run_train_flops(tiny, template, TRAIN, ptlib.TrainConfig(batch_size=4,
                                                                      grad_accum=accum), steps)
             for accum, steps in ((2, 1), (1, 2))]
    assert flops[0] == flops[1] > 0


def test_a_deep_prompts_flops_count_its_slots_as_prefix_entries_not_tokens(tiny):
    """A deep run reads the manual template's tokens plus an L-entry prefix at every layer; an
    input-layer run on the same template also computes its L slot tokens."""
    config = tiny.model.config
    steps, slots = 2, 3
    deep = run_train_flops(tiny, ptlib.parse_template("[P][P][P] {x} is"), TRAIN,
                           ptlib.TrainConfig(encoder="prefix", batch_size=4), steps)
    bare = ptlib.parse_template(" {x} is")  # the deep template's text, space included
    manual = run_train_flops(tiny, bare, TRAIN, ptlib.TrainConfig(batch_size=4), steps)
    tokens = sum(float(make_batch(tiny, bare, batch_facts(TRAIN, ptlib.TrainConfig(batch_size=4),
                                                          step, 0)).attention_mask.sum())
                 for step in range(steps))
    prefix_attention = 2 * 4 * config.hidden_size * config.num_hidden_layers * slots * tokens
    assert deep == pytest.approx(manual + prefix_attention)
    vectors = run_train_flops(tiny, ptlib.parse_template("[P][P][P] {x} is"), TRAIN,
                              ptlib.TrainConfig(encoder="free", batch_size=4), steps)
    assert vectors > deep
