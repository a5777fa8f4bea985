"""Shared fixtures: the tiny random-init LM (unit tests), the embedded SmolLM2 (slow tests, loaded
once per session) and small inline fact lists, so no unit test depends on the shipped data."""

import os
import signal

import pytest
import torch
from hypothesis import HealthCheck, settings

import ptlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Property tests run under a named hypothesis profile. "ci" (the default, used by `make test`)
# is derandomized: the same examples every run, so a test passes or fails for a reason, never by
# the draw. "fuzz" (`make fuzz`) draws many more random examples to look for new counterexamples;
# each one it finds is added to the test as an @example, so CI keeps checking it.
_PROPERTY_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=200, derandomize=True, database=None,
                          **_PROPERTY_SETTINGS)
settings.register_profile("fuzz", max_examples=5000, **_PROPERTY_SETTINGS)
settings.load_profile(os.environ.get("PTLIB_HYPOTHESIS_PROFILE", "ci"))

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Peru", "Lima"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
    ("Cuba", "Havana"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Poland", "Warsaw"),
]


# One intra-op thread for every test. The tiny model's ops are too small to share, and on this
# 2-core machine shared with other work, OpenMP threads waiting on each other made things several
# times slower: the slow soft-prompt test took 629 s with 2 threads and 75 s with 1 under the
# same load (on an idle machine 2 threads would save about a third on the slow tests).
torch.set_num_threads(1)


def padded_target_logits(model, batch, embeds) -> torch.Tensor:
    """The reference for every packed forward: the model's own full forward on the padded
    batch (its attention mask and position ids) from H_0 ``embeds`` (B, T, d), logits picked
    at the target positions: (B, Ty, V), fp32."""
    logits = model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, use_cache=False).logits  # (B, T, V)
    index = batch.target_positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index).float()


def make_facts(pairs) -> list[ptlib.Fact]:
    return [ptlib.Fact(x, y) for x, y in pairs]


@pytest.fixture(scope="session")
def tiny() -> ptlib.LM:
    """The tiny random-init Llama with a byte tokenizer (frozen, CPU). Tests must not mutate it."""
    return ptlib.tiny_lm(seed=0)


@pytest.fixture(scope="session")
def smol() -> ptlib.LM:
    """The embedded SmolLM2-135M-Instruct on CPU, loaded once for all slow tests."""
    return ptlib.load_lm(device="cpu")


@pytest.fixture
def facts() -> list[ptlib.Fact]:
    """Twelve country -> capital facts."""
    return make_facts(CAPITALS)


@pytest.fixture
def four_facts() -> list[ptlib.Fact]:
    return make_facts(CAPITALS[:4])


MORE_CAPITALS = [
    ("Germany", "Berlin"), ("Russia", "Moscow"), ("China", "Beijing"), ("Austria", "Vienna"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Sweden", "Stockholm"),
    ("Hungary", "Budapest"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Thailand", "Bangkok"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Turkey", "Ankara"), ("Iran", "Tehran"),
    ("Iraq", "Baghdad"), ("Syria", "Damascus"), ("Nepal", "Kathmandu"), ("Ghana", "Accra"),
    ("Nigeria", "Abuja"), ("Senegal", "Dakar"), ("Colombia", "Bogotá"), ("Venezuela", "Caracas"),
    ("Belgium", "Brussels"), ("Czechia", "Prague"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Ukraine", "Kyiv"),
    ("Vietnam", "Hanoi"),
]


@pytest.fixture(scope="session")
def capitals() -> tuple[list[ptlib.Fact], list[ptlib.Fact]]:
    """(train, dev) country -> capital facts: the shipped capital_of task's splits when
    data/tasks.json has it, else the inline lists split 30/15."""
    from ptlib.data import DATA_DIR

    if (DATA_DIR / "tasks.json").is_file() and "capital_of" in ptlib.list_tasks():
        task = ptlib.load_task("capital_of")
        return task.split("train"), task.split("dev")
    facts = make_facts(CAPITALS + MORE_CAPITALS)
    return facts[:30], facts[30:]


def deep_reference_logits(model, batch, deep_prompt) -> torch.Tensor:
    """The reference for a deep prompt (L, D): each example fed alone and unpadded, without its
    slot tokens, with the prompt as its KV cache, a 2D mask of ones and positions L, L + 1, ...
    (as PEFT's PREFIX_TUNING feeds it); logits at the target positions: (B, Ty, V), fp32."""
    from ptlib.deep_prompt import prefix_cache
    from ptlib.model import cache_keyword

    length = deep_prompt.shape[0]
    rows = []
    for b in range(batch.size):
        keep = batch.attention_mask[b].bool() & (batch.slot_index[b] < 0)
        ids = batch.input_ids[b][keep].unsqueeze(0)  # (1, T_b)
        size = ids.shape[1]
        logits = model(input_ids=ids, attention_mask=torch.ones(1, length + size,
                                                                dtype=torch.long),
                       position_ids=torch.arange(length, length + size).unsqueeze(0),
                       **{cache_keyword(model): prefix_cache(model, deep_prompt, 1)}).logits[0]
        first_real = int(batch.attention_mask[b].long().argmax())
        positions = batch.target_positions[b] - first_real - length  # in the unpadded row
        rows.append(logits[positions.clamp(min=0)])
    return torch.stack(rows).float()


@pytest.fixture
def python_sigint():
    """SIGINT with Python's own handler for the test, whatever the runner inherited: a pytest
    started in the background by a non-interactive shell ignores SIGINT (SIG_IGN), where
    ptlib rightly leaves Ctrl-C alone, and a test of Ctrl-C would then test nothing."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
