"""Config values are checked where they enter: strict types (a bool is not a number, a string
is not a bool or a number), combinations that would be ignored, and seeds bounded so that no
seed arithmetic can overflow torch's 64-bit generator seeds."""

import pytest

from ptlib import ConfigError, SearchConfig, TrainConfig
from ptlib.options import MAX_SEED

BAD = [
    (SearchConfig, {"exclude_capitalised": "no"}, "exclude_capitalised must be true or false"),
    (TrainConfig, {"lr": True}, "lr must be a number, not a boolean"),
    (SearchConfig, {"max_forwards": "5"}, "max_forwards must be an integer, got '5'"),
    (TrainConfig, {"max_grad_norm": "1"}, "max_grad_norm must be a number, got '1'"),
    (TrainConfig, {"encoder": "lstm", "init": "phrase", "init_phrase": "capital"},
     "the 'lstm' encoder draws its own parameters"),
    (TrainConfig, {"encoder": "lstm", "init": "phrase"}, "init and init_phrase"),
    (TrainConfig, {"encoder": "free", "hidden_size": 64}, "'free' has none"),
    (TrainConfig, {"seed": MAX_SEED + 1}, f"seed must be an integer <= {MAX_SEED}"),
    (TrainConfig, {"seed": 2**63 - 1}, f"seed must be an integer <= {MAX_SEED}"),
    (SearchConfig, {"seed": 2**70}, f"seed must be an integer <= {MAX_SEED}"),
    (SearchConfig, {"seed": True}, "seed must be an integer, not a boolean"),
]


@pytest.mark.parametrize(("kind", "values", "message"), BAD,
                         ids=[f"{k.__name__}-{v}" for k, v, _ in BAD])
def test_a_bad_value_is_a_config_error_naming_it(kind, values, message):
    with pytest.raises(ConfigError, match=message):
        kind(**values)


@pytest.mark.parametrize("kind", [TrainConfig, SearchConfig])
def test_seeds_up_to_the_maximum_are_taken_and_documented(kind):
    assert kind(seed=MAX_SEED).seed == MAX_SEED == 2**32 - 1
    field = kind.__dataclass_fields__["seed"]
    assert str(MAX_SEED) in field.metadata["help"]
