"""Bradley-Terry strengths of models from blind pairwise judgments, with seeded bootstrap intervals.

P(i beats j) = 1 / (1 + exp(-(theta_i - theta_j))). The log-strengths theta are the maximum-likelihood
fit, found by ``scipy.optimize.minimize`` (trust-ncg, a Newton trust-region method, with the analytic
gradient and Hessian) over K-1 free parameters, theta[-1] = -sum(theta[:-1]), so that sum(theta) = 0.
``strength`` is theta on the natural log-odds scale; ``elo = 1000 + 400 * theta / ln(10)`` is the
scale of FastChat's Chatbot Arena ratings, where 400 Elo points are odds of 10 to 1.

Ties: ``ties="half"`` counts a tie, and a both_bad verdict, as half a win for each side (the
"ties as half-wins" convention, which leaves the likelihood a plain Bradley-Terry one);
``ties="drop"`` leaves both out.

Intervals: the judgments (in a canonical order, so the result does not depend on storage order) are
resampled with replacement ``n_resamples`` times with numpy ``default_rng(seed)``, each resample
refitted, and the 95% interval read from the sorted resampled thetas at indices n//40 and
n - n//40 - 1, as sacrebleu reads its bootstrap intervals (eval_core.significance). A resample that
misses a model is centred over the models it has, and the missing one's interval uses the others.

Example:
    >>> from eval_core.rating_analysis import Judgment
    >>> js = [Judgment(f"q{i}", "ann", "a", "b", w) for i, w in enumerate(["model_a"] * 3 + ["model_b"])]
    >>> bt = bradley_terry(js, n_resamples=20)
    >>> [(s.model, round(s.strength, 4)) for s in bt.strengths]   # ln(3 / 1) / 2 = 0.5493
    [('a', 0.5493), ('b', -0.5493)]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from eval_core.errors import EvalCoreError
from eval_core.rating_agreement import canonical_order

if TYPE_CHECKING:  # only for annotations: rating_analysis imports this module at run time
    from eval_core.rating_analysis import Judgment

DEFAULT_SEED = 12345  # the project's bootstrap seed (sacrebleu's default), recorded in every record
DEFAULT_RESAMPLES = 1000
TIES = ("half", "drop")
# Keeps the optimum finite when a model wins (or loses) every comparison, where the MLE is at
# infinity; 1e-6 per unit theta^2 moves a fit on real data by far less than its bootstrap width.
L2_PENALTY = 1e-6
_ELO_SCALE = 400 / math.log(10)
BT_METHOD = (f"Bradley-Terry maximum likelihood (scipy trust-ncg, analytic gradient and Hessian, L2 {L2_PENALTY:g} "
             "on theta, sum(theta)=0); bootstrap percentile 95% over judgments")


@dataclass(frozen=True)
class Strength:
    """One model's Bradley-Terry strength (theta, natural log-odds) and Elo-scaled value, with 95% intervals."""

    model: str
    rank: int  # 1 = strongest
    strength: float
    low: float
    high: float
    elo: float  # 1000 + 400 * strength / ln(10)
    elo_low: float
    elo_high: float
    n: int  # judgments in the fit this model took part in


@dataclass(frozen=True)
class BradleyTerry:
    """A Bradley-Terry fit with its protocol: how ties were counted, resamples, seed."""

    strengths: list[Strength]  # best first; empty when fewer than 2 models were judged
    ties: str  # "half": a tie is half a win for each side; "drop": ties left out
    both_bad: str  # how both_bad verdicts were counted: as ties ("half") or left out ("drop")
    n_judgments: int  # judgments in the fit (after any were dropped)
    n_resamples: int
    seed: int
    method: str
    converged: bool  # the optimiser reached its gradient tolerance on the full data
    # False: some models never met, not even through others; strengths across the groups are then set
    # by the L2 penalty (each group centred on 0), not by data, and should not be compared.
    connected: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _fit_inputs(judgments: Iterable[Judgment], ties: str) -> tuple[list[Judgment], list[str]]:
    if ties not in TIES:
        raise EvalCoreError(f"ties={ties!r} is not one of {', '.join(TIES)}; 'half' counts a tie as half a win "
                            "for each side, 'drop' leaves ties out", field="ties")
    kept = [j for j in canonical_order(judgments) if ties == "half" or j.winner in ("model_a", "model_b")]
    return kept, sorted({m for j in kept for m in (j.model_a, j.model_b)})


def judged_models(judgments: Iterable[Judgment], *, ties: str = "half") -> list[str]:
    """The models a `bradley_terry` fit with this `ties` rule would rank, sorted by name.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment("q1", "ann", "a", "b", "tie")]
        >>> judged_models(js), judged_models(js, ties="drop")
        (['a', 'b'], [])
    """
    return _fit_inputs(judgments, ties)[1]


def _fit_theta(wins, theta0):
    """Penalised MLE of theta given wins[i, j] = (weighted) wins of i over j; (theta, converged).

    Free parameters are theta[:-1]; theta[-1] = -sum(theta[:-1]) fixes sum(theta) = 0, which keeps the
    Hessian non-singular. The objective is per judgment, so the tolerance does not depend on their number.
    """
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit

    games = wins + wins.T  # (K, K): comparisons between i and j
    won = wins.sum(axis=1)
    total = max(float(games.sum()) / 2, 1.0)

    def full(free):
        return np.append(free, -free.sum())

    def objective(free):
        theta = full(free)
        diff = theta[:, None] - theta[None, :]  # (K, K): theta_i - theta_j
        nll = float(np.sum(wins * np.logaddexp(0.0, -diff))) + 0.5 * L2_PENALTY * float(theta @ theta)
        grad = (games * expit(diff)).sum(axis=1) - won + L2_PENALTY * theta  # d nll / d theta
        return nll / total, (grad[:-1] - grad[-1]) / total  # chain rule through theta[-1] = -sum(free)

    def hessian(free):
        theta = full(free)
        p = expit(theta[:, None] - theta[None, :])
        w = games * p * (1 - p)  # (K, K) Fisher weights
        h = -w
        h[np.diag_indices_from(h)] = w.sum(axis=1) + L2_PENALTY
        return (h[:-1, :-1] - h[:-1, -1:] - h[-1:, :-1] + h[-1, -1]) / total

    # trust-ncg with the exact Hessian converges in a few steps from the full-data fit, and its
    # numpy-only inner loop avoids the per-iteration BLAS thread start-up that made L-BFGS-B 10-60x
    # slower per bootstrap refit on a busy 2-core machine.
    res = minimize(objective, np.asarray(theta0)[:-1], jac=True, hess=hessian, method="trust-ncg",
                   options={"gtol": 1e-10, "maxiter": 1000})
    # It can stop on "failure to predict improvement" at machine precision; a tiny gradient is convergence too.
    converged = bool(res.success or np.max(np.abs(res.jac), initial=0.0) <= 1e-8)
    return full(res.x), converged


def bradley_terry(
    judgments: Iterable[Judgment],
    *,
    ties: str = "half",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> BradleyTerry:
    """Bradley-Terry strengths of the judged models with seeded bootstrap 95% intervals.

    Args:
        judgments: the verdicts; models that never appear are not listed.
        ties: "half" counts a tie, and a both_bad verdict, as half a win for each side; "drop" leaves
            ties and both_bad out.
        n_resamples: bootstrap resamples of the judgments (with replacement, numpy
            ``default_rng(seed)``), each refitted; the interval is the sorted resamples at indices
            n//40 and n - n//40 - 1, over the resamples in which the model appears.
        seed: the bootstrap seed.

    A model that wins (or loses) every comparison has its maximum-likelihood strength at infinity; the
    tiny L2 penalty (L2_PENALTY) keeps it finite and large instead. Raises EvalCoreError with fewer
    than 2 models.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment(f"q{i}", "ann", "a", "b", w) for i, w in enumerate(["model_a"] * 3 + ["model_b", "tie"])]
        >>> bt = bradley_terry(js, n_resamples=20)
        >>> [(s.model, s.rank, round(s.strength, 4)) for s in bt.strengths]   # ln(3.5 / 1.5) / 2 = 0.4236
        [('a', 1, 0.4236), ('b', 2, -0.4236)]
    """
    import numpy as np
    from scipy.sparse.csgraph import connected_components

    kept, models = _fit_inputs(judgments, ties)
    if len(models) < 2:
        raise EvalCoreError(f"Bradley-Terry needs judgments between at least 2 models; found {len(models)} "
                            f"(ties={ties!r}); collect more ratings first", field="judgments")
    if n_resamples < 1:
        raise EvalCoreError("the number of bootstrap resamples must be at least 1", field="n_resamples")
    k, index = len(models), {m: i for i, m in enumerate(models)}
    # Each judgment adds weight to two cells of the flattened (K, K) wins matrix: winner->loser, and
    # for ties half to each direction (the second cell has weight 0 for a decisive verdict).
    a = np.array([index[j.model_a] for j in kept])
    b = np.array([index[j.model_b] for j in kept])
    w_ab = np.array([{"model_a": 1.0, "model_b": 0.0}.get(j.winner, 0.5) for j in kept])
    cell_ab, cell_ba = a * k + b, b * k + a

    def wins_of(rows):
        flat = np.bincount(cell_ab[rows], w_ab[rows], k * k) + np.bincount(cell_ba[rows], 1 - w_ab[rows], k * k)
        return flat.reshape(k, k)

    everything = np.arange(len(kept))
    theta, converged = _fit_theta(wins_of(everything), np.zeros(k))
    rng = np.random.default_rng(seed)
    samples = np.full((n_resamples, k), np.nan)  # NaN: the model is absent from that resample
    for r in range(n_resamples):
        rows = rng.choice(len(kept), size=len(kept), replace=True)
        present = np.zeros(k, bool)
        present[a[rows]] = present[b[rows]] = True
        refit = _fit_theta(wins_of(rows), theta)[0][present]
        samples[r, present] = refit - refit.mean()  # centred over the models this resample can place
    n_per_model = np.bincount(a, minlength=k) + np.bincount(b, minlength=k)
    graph = np.bincount(cell_ab, minlength=k * k).reshape(k, k)
    strengths = []
    for i in np.argsort(-theta, kind="stable"):
        got = np.sort(samples[~np.isnan(samples[:, i]), i])
        lower = len(got) // 40
        low, high = (float(got[lower]), float(got[len(got) - lower - 1])) if len(got) else (float(theta[i]),) * 2
        strengths.append(Strength(models[i], len(strengths) + 1, float(theta[i]), low, high,
                                  *(1000 + _ELO_SCALE * float(x) for x in (theta[i], low, high)), int(n_per_model[i])))
    return BradleyTerry(strengths, ties, ties, len(kept), n_resamples, seed, BT_METHOD, converged,
                        bool(connected_components(graph, directed=False)[0] == 1))


def bradley_terry_by_category(judgments: Iterable[Judgment], **kw) -> dict[str, BradleyTerry]:
    """`bradley_terry` per category, for the categories with judgments between 2 or more models.

    Judgments without a category are left out; keyword arguments go to `bradley_terry`.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment("q1", "ann", "a", "b", "model_a", "billing"), Judgment("q2", "ann", "a", "b", "model_b", "billing"),
        ...       Judgment("q3", "ann", "a", "b", "tie", "refunds")]
        >>> list(bradley_terry_by_category(js, ties="drop", n_resamples=10))
        ['billing']
    """
    groups: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if j.category:
            groups[j.category].append(j)
    out = {}
    for category, group in sorted(groups.items()):
        if len(judged_models(group, ties=kw.get("ties", "half"))) >= 2:
            out[category] = bradley_terry(group, **kw)
    return out
