"""Names that files written by older ptlib versions still use, mapped to today's.

Checkpoints and study records written before the metric had one name say ``p_at_1`` or ``em``
where ptlib now says ``exact_match`` (every object token the argmax: not the papers' P@1,
which is ``first_token_p_at_1``). Readers pass what they load through ``renamed``.
"""

RENAMED_KEYS = {
    "p_at_1": "exact_match",
    "em": "exact_match",
    "dev_p_at_1": "dev_exact_match",
    "best_dev_p_at_1": "best_dev_exact_match",
    "best_dev_em": "best_dev_exact_match",
    "test_p_at_1": "test_exact_match",
}


def renamed(value):
    """``value`` (nested dicts and lists, as read from JSON) with every dict key that has a new
    name under ``RENAMED_KEYS`` renamed; other values are returned as they are."""
    if isinstance(value, dict):
        return {RENAMED_KEYS.get(key, key): renamed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [renamed(item) for item in value]
    return value
