"""What a saved prompt or checkpoint was made for, so that loading it elsewhere is noticed.

A model's identity is its name, a fingerprint of its tokenizer (a hash of the vocabulary, token
-> id) and the shape (V, d) of its embedding matrix; a task's is a hash of its facts. Two
identities differ in the parts both record (a file written before a part was recorded is not
held to it).
"""

import hashlib
import json

from ptlib.data import Fact
from ptlib.model import LM


def tokenizer_fingerprint(tokenizer) -> str:
    """The first 16 hex digits of the sha256 of the vocabulary, as sorted (token, id) pairs."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]


def model_identity(lm: LM) -> dict:
    """``{"name", "tokenizer", "embedding": [V, d]}`` of ``lm``."""
    return {"name": lm.name, "tokenizer": tokenizer_fingerprint(lm.tokenizer),
            "embedding": [lm.vocab_size, lm.width]}


def model_differences(saved: dict, current: dict) -> list[str]:
    """The parts of two model identities that differ, each as ``"what saved, not current"``;
    a part missing (None) from either is not compared."""
    differences = []
    for key, what in (("name", "model"), ("tokenizer", "tokenizer fingerprint"),
                      ("embedding", "embedding shape (V, d)")):
        before, now = saved.get(key), current.get(key)
        if before is None or now is None:
            continue
        if key == "embedding":
            before, now = tuple(before), tuple(now)
        if before != now:
            differences.append(f"{what} {before!r}, not {now!r}")
    return differences


def facts_hash(facts: list[Fact]) -> str:
    """The first 16 hex digits of the sha256 of the facts in order: subject, object and
    alternatives of each."""
    rows = [[fact.x, fact.y, list(fact.alternatives)] for fact in facts]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]
