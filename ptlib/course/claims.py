"""The notes' claims that the course's study decides, keyed by what they claim.

Each ``Claim`` compares two method labels of the study (a method with, optionally, ``lr=...``,
``steps=...`` and ``template=NAME``, see ``Study.select``) on every relation: a difference in
mean exact match, or with ``spread`` a ratio of seed standard deviations. A notebook names the
claims it discusses by id (``evidence.show_evidence(["random_init_level", ...])``),
so inserting a notebook renames nothing here. The course's study is the second one
(``studies/course_study_v2.json``); the first (``studies/course_study.json``, whose searches
started from " the" and were cut at the training budget) is read with ``config=``, and the
claims on its methods' new names find no rows there.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from ptlib import stats
from ptlib.course.paths import course_root
from ptlib.course.study import Study, StudyConfig, plan
from ptlib.errors import ConfigError, DataError

COURSE_STUDY = Path("studies") / "course_study_v2.json"  # relative to the course's root


@dataclass(frozen=True)
class Claim:
    """One comparison the study decides on every relation."""

    text: str             # the claim in words
    label_a: str          # method label of A (the verdict's first name)
    label_b: str          # method label of B
    spread: bool = False  # compare seed spreads (steadier) rather than means (ahead)


CLAIMS = {
    # The discrete searches of the second study start from the manual template chosen on dev,
    # written as slots at its own tokens, and run to their dev plateau or a cap of 10x a
    # training run's forwards (issue 27); the first study's from-" the" searches are history.
    "autoprompt_vs_manual": Claim(
        "local search: AutoPrompt, started from the manual template chosen on dev, against "
        "that template", "autoprompt_manual", "manual"),
    "gcg_vs_manual": Claim(
        "local search: GCG, started from the manual template chosen on dev, against that "
        "template", "gcg_manual", "manual"),
    "gcg_vs_autoprompt": Claim(
        "the proposer: GCG against AutoPrompt, both from the manual template",
        "gcg_manual", "autoprompt_manual"),
    "relaxation_vs_autoprompt": Claim(
        "the relaxation: free vectors (token-sized) against AutoPrompt from the manual template",
        "free_rescaled", "autoprompt_manual"),
    "relaxation_vs_gcg": Claim(
        "the relaxation: free vectors (token-sized) against GCG from the manual template",
        "free_rescaled", "gcg_manual"),
    "random_init_level": Claim(
        "random init, level: token-sized against N(0,1) free vectors",
        "free_rescaled", "free_normal"),
    "random_init_spread": Claim(
        "random init, spread: token-sized against N(0,1) free vectors",
        "free_rescaled", "free_normal", spread=True),
    "scale_vs_learning_rate": Claim(
        "scale against learning rate: N(0,1) at lr 0.03 against token-sized at lr 0.003",
        "free_normal lr=0.03", "free_rescaled lr=0.003"),
    "slow_learning_rate_fix": Claim(
        "the notes' slow-learning-rate fix: N(0,1) at lr 0.0003 for 240 steps against lr 0.003",
        "free_normal lr=0.0003 steps=240", "free_normal lr=0.003"),
    "lstm_vs_normal_level": Claim(
        "reparameterisation, level: LSTM against N(0,1) free vectors", "lstm", "free_normal"),
    "lstm_vs_normal_spread": Claim(
        "reparameterisation, spread: LSTM against N(0,1) free vectors", "lstm", "free_normal",
        spread=True),
    "lstm_vs_rescaled_level": Claim(
        "reparameterisation, level: LSTM against token-sized free vectors",
        "lstm", "free_rescaled"),
    "lstm_vs_rescaled_spread": Claim(
        "reparameterisation, spread: LSTM against token-sized free vectors",
        "lstm", "free_rescaled", spread=True),
    "lstm_vs_rescaled_slow": Claim(
        "reparameterisation at a 10x smaller learning rate: LSTM against token-sized free "
        "vectors, both at lr 0.0003", "lstm lr=0.0003", "free_rescaled lr=0.0003"),
    "lstm_vs_rescaled_fast": Claim(
        "reparameterisation at a 10x larger learning rate: LSTM against token-sized free "
        "vectors, both at lr 0.03", "lstm lr=0.03", "free_rescaled lr=0.03"),
    "lstm_vs_mlp": Claim("the LSTM against the MLP", "lstm", "mlp"),
    "lstm_vs_manual": Claim("the LSTM against the manual template chosen on dev",
                            "lstm", "manual"),
    "placement_free": Claim(
        "placement: token-sized free vectors around the manual template against around the "
        "subject alone", "free_rescaled template=manual_wrapped", "free_rescaled"),
    "placement_lstm": Claim(
        "placement: the LSTM's vectors around the manual template against around the subject "
        "alone", "lstm template=manual_wrapped", "lstm"),
    # The second study's arms (issue 26): deep prompts on the same prepend template as
    # input-layer prompts ([P] x 3 before the manual template chosen on dev), and the reference
    # rows a practitioner compares against (LoRA at its own lr; k-shot prompting).
    "deep_prefix_vs_free": Claim(
        "deep prompts: a deep prefix (P-Tuning v2) against token-sized input vectors, both "
        "[P] x 3 before the manual template", "prefix template=prepend_3",
        "free_rescaled template=prepend_3"),
    "deep_prefix_vs_lstm": Claim(
        "deep prompts: a deep prefix against P-Tuning's LSTM, both [P] x 3 before the manual "
        "template", "prefix template=prepend_3", "lstm template=prepend_3"),
    "deep_prefix_fast_vs_free": Claim(
        "deep prompts at a 10x larger learning rate: the deep prefix at lr 0.03 against "
        "token-sized input vectors at the study's lr, both [P] x 3 before the manual template",
        "prefix lr=0.03 template=prepend_3", "free_rescaled template=prepend_3"),
    "deep_prefix_fast_vs_lstm": Claim(
        "deep prompts at a 10x larger learning rate: the deep prefix at lr 0.03 against "
        "P-Tuning's LSTM at the study's lr, both [P] x 3 before the manual template",
        "prefix lr=0.03 template=prepend_3", "lstm template=prepend_3"),
    "prefix_mlp_vs_prefix": Claim(
        "prefix tuning's reparameterisation, level: the MLP-generated deep prefix against the "
        "deep prefix trained directly", "prefix_mlp template=prepend_3",
        "prefix template=prepend_3"),
    "prefix_mlp_vs_prefix_spread": Claim(
        "prefix tuning's reparameterisation, spread: the MLP-generated deep prefix against the "
        "deep prefix trained directly", "prefix_mlp template=prepend_3",
        "prefix template=prepend_3", spread=True),
    "lora_vs_lstm": Claim(
        "the fine-tuning reference: LoRA on the manual template against P-Tuning's LSTM",
        "lora lr=0.001", "lstm"),
    "lora_vs_manual": Claim("LoRA against the manual template chosen on dev",
                            "lora lr=0.001", "manual"),
    "few_shot_vs_manual": Claim(
        "few-shot prompting: 8 solved train facts before the manual template against the "
        "manual template alone", "few_shot_8", "manual"),
    "few_shot_vs_lora": Claim("few-shot prompting (8 solved train facts) against LoRA",
                              "few_shot_8", "lora lr=0.001"),
}


@dataclass(frozen=True)
class ClaimVerdict:
    """A claim's verdict on one relation; ``missing`` says why there is none."""

    claim_id: str
    relation: str
    verdict: stats.Verdict | None
    missing: str = ""


def claims_named(claim_ids: list[str] | None) -> dict[str, Claim]:
    """The claims with these ids, in order (None: every claim); ``ConfigError`` naming an
    unknown id."""
    if claim_ids is None:
        return dict(CLAIMS)
    unknown = [claim_id for claim_id in claim_ids if claim_id not in CLAIMS]
    if unknown:
        raise ConfigError(f"unknown claims {unknown}; the course's claims are {list(CLAIMS)}")
    return {claim_id: CLAIMS[claim_id] for claim_id in claim_ids}


def claim_verdicts(study: Study, claim_ids: list[str] | None = None,
                   relations: list[str] | None = None) -> list[ClaimVerdict]:
    """Every named claim on every relation that has runs (default: all of both)."""
    relations = relations or list(dict.fromkeys(r["relation"] for r in study.records))
    out = []
    for relation in relations:
        for claim_id, claim in claims_named(claim_ids).items():
            try:
                verdict = study.compare(relation, claim.label_a, claim.label_b,
                                        spread=claim.spread)
                out.append(ClaimVerdict(claim_id, relation, verdict))
            except (DataError, ConfigError) as err:
                out.append(ClaimVerdict(claim_id, relation, None, f"not in the study yet ({err})"))
    return out


def study_path(root: str | Path | None = None, config: str | Path | None = None
               ) -> Path | None:
    """Where a study config is: ``config`` (a relative path: to the course's root), by default
    the course's study ``COURSE_STUDY``; None when the course's root cannot be found for it."""
    if config is not None and Path(config).is_absolute():
        return Path(config)
    try:
        return course_root(root) / (COURSE_STUDY if config is None else Path(config))
    except ConfigError:
        return None


def course_study(root: str | Path | None = None, config: str | Path | None = None
                 ) -> Study | None:
    """The course's study as its files are now (``course_root(root)``), or the study whose
    config is at ``config`` (relative paths: to the course's root); None when the config is not
    there. Loaded once per state of the results file, so a notebook's cells share one read."""
    path = study_path(root, config)
    if path is None:
        return None
    if not path.exists():
        return None
    results = StudyConfig.from_file(path).results
    stamp = (results.stat().st_mtime_ns, results.stat().st_size) if results.exists() else None
    return _study_as_of(path, stamp)


@functools.lru_cache(maxsize=2)
def _study_as_of(path: Path, stamp: tuple | None) -> Study:
    return Study.load(path)


def course_rows(root: str | Path | None = None, config: str | Path | None = None,
                labels: list[str] | None = None) -> list[dict]:
    """``Study.summary_rows(labels)`` of the course's study, or of the study config at
    ``config`` (for ``study_plots.study_strip``; ``labels`` default to the study's methods at
    their defaults); empty when its config or results are not here."""
    study = course_study(root, config)
    return study.summary_rows(labels) if study is not None else []


def study_note(study: Study | None) -> str:
    """One line on a study (``course_study``'s: None when its config is not here): how many of
    its planned runs are recorded, or why there is nothing to read yet."""
    if study is None:
        return ("The course's study config is not here: run from a clone of the course "
                "repository (its studies/ folder is not part of the ptlib package).")
    if not study.records:
        return (f"No results from the course's study here yet ({study.config.results.name}): "
                "`make study` runs it, and its verdicts then print here.")
    return (f"The course's study ({study.config.results.name}): {len(study.records)} of "
            f"{len(plan(study.config))} planned runs recorded.")
