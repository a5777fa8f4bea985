"""Verdicts between two methods scored on the same test facts under the same seeds.

Each method gives an outcome matrix ``(S, F)``: row i holds seed i's per-fact outcomes (1.0 for
an exact match, 0.0 for a miss, or any float score) and column j is the same test fact for every
seed. Seed i of method A and seed i of method B share their batches and initialisation draws, so
the two matrices are paired on both axes. ``paired_difference`` gives an interval on
mean(A) - mean(B), ``sd_ratio`` one on the ratio of the seed standard deviations, and
``verdict`` turns either into a sentence: which method is ahead (or steadier), or that this many
seeds and facts cannot tell, and roughly how many seeds could.

Why two levels. A verdict should hold for another run and for other facts of the same relation.
Seeds alone treat the test facts as the whole world (a method may just happen to know these
capitals); facts alone treat one lucky seed as the method. So the difference resamples seeds
and, independently, facts, each with the same indices for A and B: pairing keeps what the two
methods share (a seed's batches, a fact's difficulty) out of the difference.

Why the width is corrected. Resampling both levels counts the per-(seed, fact) noise three
times, in the seed means, in the fact means and in the cells (Owen 2007, "The pigeonhole
bootstrap"; McCullagh 2000 shows that no resampling scheme gets the crossed design exactly).
On simulated 10-seed x 60-fact studies the plain two-level interval was 1.3 to 1.6 times too
wide when outcome noise dominates and caught a true gap of 3 standard errors in only 40-64% of
studies. The replicates are therefore shrunk about the estimate by sqrt(V / V_boot): V is the
usual unbiased variance of a crossed design's mean, from a two-way ANOVA of the paired
differences, and V_boot the exact variance of the two-level replicates. The bootstrap gives the
shape, the ANOVA the width. On the same kind of studies (tests/test_stats.py) the corrected
95% interval called 91-94% of no-difference studies undecided and found a 3-standard-error gap
in 84-89%.

Why percentile. The percentile interval reads its ends off the resampled statistic itself: it
follows the skew of exact-match fractions near 0 or 1 and of a ratio of standard deviations,
and needs no standard-error formula, which a ratio of spreads over few seeds lacks.

Why the spread resamples seeds only. "Steadier" is about seed-to-seed spread on these facts.
Resampling facts adds fresh fact noise to every seed's mean in every replicate, which inflates
the replicated spreads, most for the steadier method, and pulls the ratio toward 1: on simulated
10 x 60 studies a method about three times steadier was found in 3% of studies with facts
resampled and in 38% with seeds only.

Why t, and why 5 seeds. A percentile interval is a z-interval at heart: it does not widen for
the uncertainty of a variance estimated from few seeds, and with the seed spread dominating it
named a winner between identical methods in 19% of simulated 3-seed studies and 11% of 10-seed
ones (nominal 5%). The width is therefore stretched by t_df / z, df the Satterthwaite degrees
of freedom of the ANOVA mean squares (about S - 1 when seeds dominate, large when facts do);
``tests/test_stats.py`` calibrates it at 5 and 10 seeds. Below MIN_SEEDS seeds no verdict is
given at all, on a difference or a spread: the degrees of freedom are too few for any interval
to be trusted.
"""

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ptlib.errors import ConfigError
from ptlib.student_t import t_quantile

Outcomes = np.ndarray | Sequence[Sequence[float]]  # one method's (S, F) outcomes

MAX_SEEDS = 100  # the largest seed count a verdict will suggest
MIN_SEEDS = 5  # below this no verdict is given, on a difference or a spread: see verdict
MIN_RESAMPLES = 100  # fewer cannot place the ends of a 95% percentile interval
FLOOR = 0.1  # fractions within FLOOR of 0 or 1 get no spread verdict: see _spread_verdict


@dataclass(frozen=True)
class Difference:
    """mean(A) - mean(B) over all seeds and facts, with a two-level bootstrap interval."""

    mean_a: float      # mean outcome of A over its (S, F) matrix
    mean_b: float      # mean outcome of B
    difference: float  # mean_a - mean_b
    low: float         # lower end of the interval on the difference
    high: float        # upper end
    confidence: float  # e.g. 0.95
    n_seeds: int       # S
    n_facts: int       # F


@dataclass(frozen=True)
class SpreadRatio:
    """sd(A) / sd(B), each the sd over seeds of each seed's mean over facts, with an interval.

    A zero sd is reported as it is: sd(A) > 0 = sd(B) gives an infinite ratio, sd(A) = 0 < sd(B)
    a ratio of 0, and two zero sds a ratio of 1 (equally steady); bootstrap replicates follow the
    same rule, so the interval's ends can be 0 or inf too.
    """

    sd_a: float        # sd over seeds of A's per-seed means (ddof 1)
    sd_b: float        # the same for B
    ratio: float       # sd_a / sd_b
    low: float         # lower end of the interval on the ratio
    high: float        # upper end
    confidence: float  # e.g. 0.95
    n_seeds: int       # S
    n_facts: int       # F
    mean_a: float = math.nan  # mean outcome of A over its (S, F) matrix
    mean_b: float = math.nan  # the same for B
    fractions: bool = False   # every outcome lies in [0, 1] (exact match): FLOOR applies


class Outcome(enum.Enum):
    """What a comparison found, as data: notebooks and tallies branch on this, never on text."""

    AHEAD = "ahead"                  # the winner's mean is higher; the interval excludes 0
    STEADIER = "steadier"            # the winner's seed sd is lower; the interval excludes 1
    UNDECIDED = "undecided"          # the interval covers no difference
    TOO_FEW_SEEDS = "too few seeds"  # no interval at this many seeds
    NOT_COMPARED = "not compared"    # a spread at the floor or ceiling (see _at_the_edge)


@dataclass(frozen=True)
class Verdict:
    """A comparison as data and in words.

    ``outcome`` says what was found and ``winner`` (one of the two names, for AHEAD and
    STEADIER; else None) who won; ``text`` gives the claim with its interval and the n it
    rests on; ``comparison`` the numbers (None where none were computed). ``seeds_needed`` is
    set only when undecided, and only when ``verdict``'s rule finds a count up to MAX_SEEDS."""

    outcome: Outcome
    winner: str | None
    text: str
    seeds_needed: int | None
    comparison: "Difference | SpreadRatio | None" = None

    @property
    def decided(self) -> bool:
        """True when one method won (ahead or steadier)."""
        return self.winner is not None

    @property
    def label(self) -> str:
        """A short phrase for people ("lstm ahead", "undecided"): display only."""
        return f"{self.winner} {self.outcome.value}" if self.winner else self.outcome.value

    def __str__(self) -> str:
        return self.text


def outcome_matrix(per_seed_outcomes: Outcomes, *, name: str = "outcomes") -> np.ndarray:
    """Stack each seed's per-fact outcomes into a float matrix (S, F); rows are seeds.

    Raises ``ConfigError`` (a ``ValueError``), naming ``name``, for fewer than 2 seeds or 2
    facts, rows that are not flat or differ in length, and NaN or infinite outcomes.
    """
    rows = [np.asarray(row, dtype=float) for row in per_seed_outcomes]
    if len(rows) < 2:
        raise ConfigError(f"{name}: need outcomes from at least 2 seeds, got {len(rows)}")
    for i, row in enumerate(rows):
        if row.ndim != 1:
            raise ConfigError(f"{name}: seed {i} must be a flat sequence of per-fact outcomes, "
                              f"got shape {row.shape}")
        if len(row) != len(rows[0]):
            raise ConfigError(f"{name}: seed {i} has {len(row)} facts but seed 0 has "
                              f"{len(rows[0])}; every seed must be scored on the same facts")
    matrix = np.stack(rows)  # (S, F)
    if matrix.shape[1] < 2:
        raise ConfigError(f"{name}: need at least 2 facts per seed, got {matrix.shape[1]}")
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        seed, fact = bad[0]
        raise ConfigError(f"{name}: outcome of seed {seed}, fact {fact} is "
                          f"{matrix[seed, fact]}; outcomes must be finite")
    return matrix


def paired_difference(a: Outcomes, b: Outcomes, *, resamples: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> Difference:
    """Mean of A minus mean of B, a: (S, F) and b: (S, F), with a percentile interval.

    Each of ``resamples`` replicates draws S seeds and, independently, F facts with
    replacement, the same indices for A and B, and takes the mean difference over the drawn
    grid; the replicates are then scaled to the crossed-design variance, stretched from z to t
    (module docstring). ``verdict`` gives no verdict from fewer than MIN_SEEDS seeds.
    """
    a, b = _pair(a, b)
    _check_settings(resamples, confidence)
    n_seeds, n_facts = a.shape
    rng = np.random.default_rng(seed)
    seed_counts = _draw_counts(n_seeds, resamples, rng)  # (R, S)
    fact_counts = _draw_counts(n_facts, resamples, rng)  # (R, F)
    d = a - b  # (S, F)
    replicates = ((seed_counts @ d) * fact_counts).sum(axis=1) / d.size  # (R,)
    estimate = float(d.mean())
    ends = estimate + _width(d, confidence) * (_percentile(replicates, confidence) - estimate)
    return Difference(float(a.mean()), float(b.mean()), estimate, float(ends[0]),
                      float(ends[1]), confidence, n_seeds, n_facts)


def sd_ratio(a: Outcomes, b: Outcomes, *, resamples: int = 2000, confidence: float = 0.95,
             seed: int = 0) -> SpreadRatio:
    """Seed sd of A over seed sd of B, a: (S, F) and b: (S, F), with a percentile interval.

    A seed's score is its mean over facts (S,); each replicate draws S seeds with replacement,
    the same seeds for A and B (the same seed draws as ``paired_difference`` with this
    ``seed``). Facts are not resampled: see the module docstring.
    """
    a, b = _pair(a, b)
    _check_settings(resamples, confidence)
    n_seeds, n_facts = a.shape
    seed_counts = _draw_counts(n_seeds, resamples, np.random.default_rng(seed))  # (R, S)
    all_seeds = np.ones((1, n_seeds))
    means_a, means_b = a.mean(axis=1), b.mean(axis=1)  # (S,)
    sd_a, sd_b = _seed_sd(means_a, all_seeds)[0], _seed_sd(means_b, all_seeds)[0]
    replicates = _ratio(_seed_sd(means_a, seed_counts), _seed_sd(means_b, seed_counts))  # (R,)
    low, high = _percentile(replicates, confidence)
    fractions = bool(((a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)).all())
    return SpreadRatio(float(sd_a), float(sd_b), float(_ratio(sd_a, sd_b)), float(low),
                       float(high), confidence, n_seeds, n_facts, float(a.mean()),
                       float(b.mean()), fractions)


def verdict(comparison: Difference | SpreadRatio, name_a: str, name_b: str, *,
            unit: str = "EM") -> Verdict:
    """Say which method is ahead (a ``Difference``) or steadier (a ``SpreadRatio``).

    A method wins when the interval excludes no difference (0, or a ratio of 1). Otherwise the
    verdict says how many seeds would be needed, by this rule: the interval's distance from the
    estimate to its end on the no-difference side (on the log scale for a ratio) is assumed to
    shrink as 1/sqrt(seeds) with the facts kept, and the answer is the fewest seeds at which it
    would be shorter than the observed effect (optimistic where fact-to-fact variation matters,
    which more seeds do not reduce). With fewer than MIN_SEEDS seeds a spread gets no
    verdict and no interval: resampling 3 seeds draws one seed three times in 1 of 9
    replicates, so the percentile ends are artefacts. Its seed count then comes from the
    log-sd rule instead: the log of an sd from n seeds has a standard error of about
    1/sqrt(2(n-1)), a log ratio of two about 1/sqrt(n-1), and the answer is the fewest n at
    which 1.96 of those is below |log ratio|. A spread of fractions (exact match) is not
    compared when either mean lies within FLOOR of 0 or 1: seeds that nearly all fail (or all
    succeed) agree by failing, so a small sd there is the floor, not steadiness (the course's
    study found N(0,1) vectors "steadier" than the LSTM at mean EM 0.02 against 0.20).
    ``unit`` labels a difference.
    """
    if isinstance(comparison, Difference):
        return _difference_verdict(comparison, name_a, name_b, unit)
    return _spread_verdict(comparison, name_a, name_b)


def too_few_seeds(name_a: str, name_b: str, means: tuple[float, float], n_seeds: int,
                  n_facts: int, unit: str = "EM", comparison: Difference | None = None
                  ) -> Verdict:
    """The verdict below MIN_SEEDS seeds (one seed included): the two means, no interval."""
    seeds = f"{n_seeds} seed" + ("s" if n_seeds != 1 else "")
    return Verdict(Outcome.TOO_FEW_SEEDS, None, f"no verdict from {seeds}: {name_a} "
                   f"{means[0]:.3f} {unit} vs {name_b} {means[1]:.3f} {unit} on {n_facts} "
                   f"facts ({means[0] - means[1]:+.2f}); a verdict needs at least {MIN_SEEDS} "
                   "seeds", None, comparison)


def _difference_verdict(c: Difference, name_a: str, name_b: str, unit: str) -> Verdict:
    if c.n_seeds < MIN_SEEDS:
        return too_few_seeds(name_a, name_b, (c.mean_a, c.mean_b), c.n_seeds, c.n_facts,
                             unit, c)
    def claim(value: float, low: float, high: float) -> str:
        return (f"{value:+.2f} {unit} ({c.confidence:.0%} CI {low:+.2f} to {high:+.2f}; "
                f"{c.n_seeds} seeds x {c.n_facts} facts)")

    if c.low > 0:
        return Verdict(Outcome.AHEAD, name_a, f"{name_a} ahead of {name_b}: "
                       f"{claim(c.difference, c.low, c.high)}", None, c)
    if c.high < 0:
        return Verdict(Outcome.AHEAD, name_b, f"{name_b} ahead of {name_a}: "
                       f"{claim(-c.difference, -c.high, -c.low)}", None, c)
    near_end = c.low if c.difference > 0 else c.high
    needed = _seeds_needed(c.difference, near_end, c.n_seeds)
    return Verdict(Outcome.UNDECIDED, None, f"no difference detectable at this size between "
                   f"{name_a} and {name_b}: {name_a} minus {name_b} "
                   f"{claim(c.difference, c.low, c.high)}; "
                   f"{_seeds_phrase(needed, f'{c.difference:+.2f} {unit}')}", needed, c)


def _spread_verdict(c: SpreadRatio, name_a: str, name_b: str) -> Verdict:
    def claim(first: str, second: str, sds: tuple[float, float], value: float, low: float,
              high: float) -> str:
        return (f"seed sd {sds[0]:.3f} vs {sds[1]:.3f}, ratio {first}/{second} {value:.2f} "
                f"({c.confidence:.0%} CI {low:.2f} to {high:.2f}; "
                f"{c.n_seeds} seeds x {c.n_facts} facts)")

    edge = _at_the_edge(c, name_a, name_b)
    if edge:
        return Verdict(Outcome.NOT_COMPARED, None, f"spread not compared: {edge}", None, c)
    label = "no difference in spread detectable at this size"
    if c.n_seeds < MIN_SEEDS:
        needed = _spread_seeds_needed(c.ratio)
        uncertainty = 1 / math.sqrt(2 * (c.n_seeds - 1)) if c.n_seeds > 1 else math.inf
        return Verdict(Outcome.TOO_FEW_SEEDS, None, f"no verdict on spread from {c.n_seeds} "
                       "seeds: seed sd "
                       f"{c.sd_a:.3f} ({name_a}) vs {c.sd_b:.3f} ({name_b}), each uncertain by "
                       f"about {uncertainty:.0%}; "
                       f"{_seeds_phrase(needed, f'a ratio of {c.ratio:.2f}', 'log-sd rule')}",
                       needed, c)
    if c.high < 1:
        return Verdict(Outcome.STEADIER, name_a, f"{name_a} steadier than {name_b}: "
                       f"{claim(name_a, name_b, (c.sd_a, c.sd_b), c.ratio, c.low, c.high)}",
                       None, c)
    if c.low > 1:
        inverse = (1 / c.ratio, 1 / c.high, 1 / c.low)
        return Verdict(Outcome.STEADIER, name_b, f"{name_b} steadier than {name_a}: "
                       f"{claim(name_b, name_a, (c.sd_b, c.sd_a), *inverse)}", None, c)
    near_end = c.high if c.ratio < 1 else c.low
    with np.errstate(divide="ignore"):
        needed = _seeds_needed(np.log(c.ratio), np.log(near_end), c.n_seeds)
    return Verdict(Outcome.UNDECIDED, None, f"{label} between {name_a} and {name_b}: "
                   f"{claim(name_a, name_b, (c.sd_a, c.sd_b), c.ratio, c.low, c.high)}; "
                   f"{_seeds_phrase(needed, f'a ratio of {c.ratio:.2f}')}", needed, c)


def _at_the_edge(c: SpreadRatio, name_a: str, name_b: str) -> str:
    """Why a spread of fractions cannot be compared (a mean within FLOOR of 0 or 1), or ""."""
    if not c.fractions:
        return ""
    reasons = []
    for name, mean in ((name_a, c.mean_a), (name_b, c.mean_b)):
        if mean < FLOOR:
            reasons.append(f"{name} is at the floor (mean {mean:.3f} < {FLOOR:g}): its seeds "
                           "nearly all fail, and agree by failing")
        elif mean > 1 - FLOOR:
            reasons.append(f"{name} is at the ceiling (mean {mean:.3f} > {1 - FLOOR:g}): its "
                           "seeds nearly all succeed, and agree by succeeding")
    if not reasons:
        return ""
    return (f"{'; '.join(reasons)}. Seed sd {c.sd_a:.3f} vs {c.sd_b:.3f} does not measure "
            "steadiness there")


def _spread_seeds_needed(ratio: float) -> int | None:
    """Fewest seeds n with 1.96 / sqrt(n - 1) < |log ratio|, and at least MIN_SEEDS (the
    fewest a spread verdict is given from); None if over MAX_SEEDS or never (a ratio of 1, 0 or
    inf)."""
    if not 0 < ratio < math.inf or ratio == 1:
        return None
    needed = 1 + (1.96 / abs(math.log(ratio))) ** 2
    return None if needed >= MAX_SEEDS else max(MIN_SEEDS, math.floor(needed) + 1)


def _seeds_needed(effect: float, near_end: float, n_seeds: int) -> int | None:
    """Fewest seeds n with (effect - near_end) * sqrt(n_seeds / n) < |effect|, or None if that
    is over MAX_SEEDS or never (a zero or infinite effect); effect 0 means no difference."""
    needed = n_seeds * ((effect - near_end) / effect) ** 2 if effect != 0 else math.inf
    if not math.isfinite(needed) or needed >= MAX_SEEDS:
        return None
    return math.floor(needed) + 1


def _seeds_phrase(needed: int | None, effect: str, rule: str = "1/sqrt(seeds) rule") -> str:
    if needed is None:
        return f"even {MAX_SEEDS} seeds would not detect {effect} ({rule})"
    return f"about {needed} seeds would be needed to detect {effect} ({rule})"


def _pair(a: Outcomes, b: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Both outcome matrices, checked to be (S, F) each and paired: the same shape."""
    a, b = outcome_matrix(a, name="a"), outcome_matrix(b, name="b")
    if a.shape != b.shape:
        raise ConfigError(f"a and b must be scored on the same seeds and facts to be paired: "
                          f"a is {a.shape} (seeds, facts), b is {b.shape}")
    return a, b


def _check_settings(resamples: int, confidence: float) -> None:
    if not isinstance(resamples, int | np.integer) or resamples < MIN_RESAMPLES:
        raise ConfigError(f"resamples must be an integer >= {MIN_RESAMPLES}, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _draw_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of n items is drawn when each resample draws n with replacement: (R, n).

    All R x n indices are drawn at once; counts stand in for the drawn copies, so a statistic
    over a resample is a count-weighted one over the originals."""
    picks = rng.integers(0, n, size=(resamples, n))  # (R, n)
    flat = (picks + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n)


def _percentile(replicates: np.ndarray, confidence: float) -> np.ndarray:
    """The (1 - confidence) / 2 and (1 + confidence) / 2 order statistics of replicates (R,).

    Order statistics, not interpolation, so infinite replicates of a ratio stay well defined."""
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]
    return np.quantile(replicates, tails, method="inverted_cdf")


def _width(d: np.ndarray, confidence: float) -> float:
    """The factor that takes the two-level replicates of paired differences d: (S, F) to the
    interval's width: sqrt(V / V_boot) * t / z; 1 when d is constant.

    Two-way ANOVA: d = grand + seed effect r (S,) + fact effect k (F,) + residual z (S, F).
    V_boot = sum r^2 / S^2 + sum k^2 / F^2 + sum z^2 / (S F)^2 is the exact variance of the
    two-level replicates given d; V = (max(MS_r - MS_z, 0) + max(MS_k - MS_z, 0) + MS_z) / (S F)
    estimates var_seed / S + var_fact / F + var_noise / (S F) from the mean squares. A variance
    estimated from few seeds is itself uncertain, which a z-width ignores: the width is
    stretched by t_df / z, with df the Satterthwaite degrees of freedom of V's mean squares."""
    n_seeds, n_facts = d.shape
    grand = d.mean()
    r = d.mean(axis=1) - grand  # (S,)
    k = d.mean(axis=0) - grand  # (F,)
    z = d - grand - r[:, None] - k[None, :]  # (S, F)
    boot = (r @ r) / n_seeds**2 + (k @ k) / n_facts**2 + (z * z).sum() / d.size**2
    if boot == 0:
        return 1.0
    mean_squares = {"seed": (n_facts * (r @ r) / (n_seeds - 1), n_seeds - 1),
                    "fact": (n_seeds * (k @ k) / (n_facts - 1), n_facts - 1)}
    ms_z = (z * z).sum() / ((n_seeds - 1) * (n_facts - 1))
    kept = [(ms, df) for ms, df in mean_squares.values() if ms > ms_z]
    terms = kept + [(ms_z * (1 - len(kept)), (n_seeds - 1) * (n_facts - 1))]  # (c MS, df)
    target = sum(value for value, _ in terms)  # V * S F
    spread = sum(value**2 / df for value, df in terms)
    df_eff = target**2 / spread if spread > 0 else math.inf
    tail = (1 + confidence) / 2
    stretch = (t_quantile(tail, df_eff) / NormalDist().inv_cdf(tail)
               if math.isfinite(df_eff) else 1.0)
    return math.sqrt(target / d.size / boot) * stretch


def _seed_sd(seed_means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sample sd (ddof 1) of seed_means (S,) in each count-weighted resample counts (R, S): (R,).

    Uses var = sum_ij c_i c_j (m_i - m_j)^2 / (2 S (S - 1)), so seeds with equal means give an
    sd of exactly 0 (subtracting a computed mean can leave rounding error)."""
    n = seed_means.size
    gaps = (seed_means[:, None] - seed_means[None, :]) ** 2  # (S, S)
    return np.sqrt(((counts @ gaps) * counts).sum(axis=1) / (2 * n * (n - 1)))


def _ratio(num, den):
    """num / den elementwise, reading 0 / 0 as 1 (two methods with no spread are equally
    steady) and x / 0 as inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((num == 0) & (den == 0), 1.0, np.divide(num, den))
