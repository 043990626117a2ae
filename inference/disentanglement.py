"""Disentanglement metrics: how well an encoder's code separates known generative factors.

They judge any encoder, not only a VAE's: each takes ``encode`` (observations ``(n, ...)`` to
codes ``(n, d)``, e.g. the means of q(z|x)) and a :class:`GroundTruth` (the factors' sizes and a
function that renders observations from factor values). The reference implementation is
disentanglement_lib (Locatello et al. 2019); the settings below follow it unless stated.

- :func:`mig`: the mutual information gap (Chen et al. 2018). For each factor, the gap between the
  two code dimensions that share the most information with it, divided by the factor's entropy;
  averaged over factors. Codes are discretized into 20 equal-width bins per dimension.
- :func:`factorvae_score` (Kim & Mnih 2018): fix one factor, draw a batch, and vote for the code
  dimension of least (normalized) variance; a majority-vote classifier from dimension to factor is
  fit on training votes and its accuracy on other votes is the score. Dimensions whose variance over
  the data is at most ``prune`` (collapsed) do not vote. Only the order of the variances counts: a
  rotation that keeps one closest dimension per factor scores as well as the factors themselves.
- :func:`dci` (Eastwood & Williams 2018): disentanglement, completeness and informativeness from the
  importance matrix of one classifier per factor (scikit-learn's gradient-boosted trees, as in
  disentanglement_lib; an optional dependency: ``pip install 'pyro-vae[disentanglement]'``).
- :func:`total_correlation`: KL(q(z) || prod_j q(z_j)) of the aggregate posterior
  q(z) = 1/N sum_n q(z|x_n) of diagonal Gaussians, estimated by sampling z from it and evaluating the
  mixture densities over the N encodings.

Scores lie in [0, 1] (total correlation in nats, >= 0): a code equal to the factors up to
permutation and scaling scores near 1, a rotation of it lower, noise near 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from inference.evaluate import evaluate

Encoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GroundTruth:
    """A data source with known factors: their sizes, names, and how observations are made from
    factor indices ``(n, K)`` (``observe``), e.g. :func:`pyro_vae.shapes.render`."""

    factor_sizes: tuple[int, ...]
    observe: Callable[[torch.Tensor], torch.Tensor]
    factor_names: tuple[str, ...] = ()

    def sample_factors(self, count: int, generator: torch.Generator, fixed: dict[int, int] | None = None
                       ) -> torch.Tensor:
        """``count`` factor vectors drawn uniformly, the factors in ``fixed`` (index -> value) held."""
        factors = torch.stack([torch.randint(s, (count,), generator=generator) for s in self.factor_sizes], -1)
        for k, value in (fixed or {}).items():
            factors[:, k] = value
        return factors

    def codes(self, encode: Encoder, factors: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``encode`` of the observations of ``factors``, in batches, without gradients."""
        with torch.no_grad():
            return torch.cat([encode(self.observe(f)).detach().cpu().double() for f in factors.split(batch_size)])


def _discretize(codes: torch.Tensor, bins: int) -> torch.Tensor:
    """Each column cut into ``bins`` equal-width bins over its range (disentanglement_lib's histogram)."""
    low, high = codes.min(0).values, codes.max(0).values
    width = (high - low).clamp_min(1e-12) / bins
    return ((codes - low) / width).floor().clamp(0, bins - 1).long()


def _mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """I(a; b) in nats of two discrete sequences (the plug-in estimate)."""
    _, a = a.unique(return_inverse=True)
    _, b = b.unique(return_inverse=True)
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / outer[nz]).log()).sum())


@dataclass(frozen=True)
class MIGResult:
    """:ivar score: the MIG, mean over factors; :ivar per_factor: each factor's normalized gap;
    :ivar mutual_information: I(z_j; v_k) in nats, ``(d, K)``; :ivar entropy: H(v_k) per factor."""

    score: float
    per_factor: list[float]
    mutual_information: torch.Tensor
    entropy: list[float]


def mig(encode: Encoder, truth: GroundTruth, *, num_samples: int = 10000, bins: int = 20, seed: int = 0,
        batch_size: int = 256) -> MIGResult:
    """The mutual information gap of ``encode`` on ``num_samples`` random observations.

    >>> import torch
    >>> truth = GroundTruth((5, 8), observe=lambda f: f.double())
    >>> round(mig(lambda x: x.flip(-1) * 3.0, truth, num_samples=4000).score, 2)  # the factors, swapped and scaled
    1.0
    """
    factors = truth.sample_factors(num_samples, torch.Generator().manual_seed(seed))
    codes = _discretize(truth.codes(encode, factors, batch_size), bins)
    mi = torch.tensor([[_mutual_information(codes[:, j], factors[:, k]) for k in range(factors.shape[1])]
                       for j in range(codes.shape[1])], dtype=torch.float64)
    entropy = [_mutual_information(factors[:, k], factors[:, k]) for k in range(factors.shape[1])]
    top = mi.sort(0, descending=True).values
    second = top[1] if codes.shape[1] > 1 else torch.zeros_like(top[0])
    gaps = [float((top[0, k] - second[k]) / entropy[k]) if entropy[k] > 0 else 0.0 for k in range(len(entropy))]
    return MIGResult(sum(gaps) / len(gaps), gaps, mi, entropy)


@dataclass(frozen=True)
class FactorVAEResult:
    """:ivar score: the majority-vote classifier's accuracy on the evaluation votes;
    :ivar train_accuracy: on the votes it was fit to; :ivar active_dims: the dimensions that voted;
    :ivar votes: the training votes, ``(d, K)`` counts."""

    score: float
    train_accuracy: float
    active_dims: list[int]
    votes: torch.Tensor


def factorvae_score(encode: Encoder, truth: GroundTruth, *, batch_size: int = 64, num_train: int = 1000,
                    num_eval: int = 500, num_variance_estimate: int = 10000, prune: float = 0.01, seed: int = 0
                    ) -> FactorVAEResult:
    """Kim & Mnih's FactorVAE score (disentanglement_lib uses 10 000 training and 5 000 evaluation
    votes of batches of 64; the defaults here are smaller, for a CPU).

    :param prune: dimensions whose variance over the data is at most this do not vote (collapsed;
        the threshold of active units).

    >>> import torch
    >>> truth = GroundTruth((4, 6, 5), observe=lambda f: f.double())
    >>> factorvae_score(lambda x: x[:, [2, 0, 1]] * 2.0, truth, num_train=100, num_eval=50).score
    1.0
    """
    generator = torch.Generator().manual_seed(seed)
    reference = truth.codes(encode, truth.sample_factors(num_variance_estimate, generator))
    scale = reference.var(0)
    active = (scale > prune).nonzero().flatten()
    num_factors = len(truth.factor_sizes)

    def votes(count: int) -> torch.Tensor:
        counts = torch.zeros(reference.shape[1], num_factors, dtype=torch.long)
        for _ in range(count):
            k = int(torch.randint(num_factors, (1,), generator=generator))
            value = int(torch.randint(truth.factor_sizes[k], (1,), generator=generator))
            codes = truth.codes(encode, truth.sample_factors(batch_size, generator, fixed={k: value}))
            d = int(active[(codes[:, active].var(0) / scale[active]).argmin()])
            counts[d, k] += 1
        return counts

    if active.numel() == 0:
        return FactorVAEResult(0.0, 0.0, [], torch.zeros(reference.shape[1], num_factors, dtype=torch.long))
    train, held_out = votes(num_train), votes(num_eval)
    classifier = train.argmax(1)  # dimension -> its most voted factor
    train_accuracy = float(train.max(1).values.sum() / train.sum())
    score = float(held_out[torch.arange(len(classifier)), classifier].sum() / held_out.sum())
    return FactorVAEResult(score, train_accuracy, active.tolist(), train)


@dataclass(frozen=True)
class DCIResult:
    """Eastwood & Williams' scores: :ivar disentanglement: each dimension's 1 - entropy (base K) of
    its importance over the factors, weighted by its share of the importance; :ivar completeness:
    each factor's 1 - entropy (base d) over the dimensions, weighted likewise; :ivar informativeness:
    the classifiers' mean test accuracy; :ivar importance: the ``(d, K)`` importance matrix."""

    disentanglement: float
    completeness: float
    informativeness: float
    importance: torch.Tensor


def _one_minus_entropy(p: torch.Tensor, base: int) -> torch.Tensor:
    """1 - H(p) / log(base) per row of nonnegative weights (rows normalized here)."""
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    h = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(base)
    return 1 - h


def gradient_boosting(**options) -> Callable:
    """A factory of scikit-learn ``GradientBoostingClassifier(random_state=0, **options)`` for :func:`dci`
    (scikit-learn is the optional ``disentanglement`` extra; its absence is named here)."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("dci fits scikit-learn classifiers: pip install 'pyro-vae[disentanglement]'") from error
    return lambda: GradientBoostingClassifier(random_state=0, **options)


def dci(encode: Encoder, truth: GroundTruth, *, num_train: int = 2000, num_test: int = 1000, seed: int = 0,
        classifier: Callable | None = None) -> DCIResult:
    """DCI disentanglement, completeness and informativeness of ``encode``.

    :param classifier: a factory of scikit-learn classifiers with ``feature_importances_``, one fit per
        factor (default: ``GradientBoostingClassifier()``, as disentanglement_lib).

    >>> import torch
    >>> truth = GroundTruth((4, 5), observe=lambda f: f.double())
    >>> trees = gradient_boosting(n_estimators=20)
    >>> result = dci(lambda x: x.flip(-1), truth, num_train=300, num_test=100, classifier=trees)
    >>> round(result.disentanglement, 2), round(result.informativeness, 2)
    (1.0, 1.0)
    """
    classifier = classifier or gradient_boosting()
    generator = torch.Generator().manual_seed(seed)
    train_factors, test_factors = truth.sample_factors(num_train, generator), truth.sample_factors(num_test, generator)
    train_codes = truth.codes(encode, train_factors).numpy()
    test_codes = truth.codes(encode, test_factors).numpy()
    importance, accuracy = [], []
    for k in range(train_factors.shape[1]):
        model = classifier().fit(train_codes, train_factors[:, k].numpy())
        importance.append(torch.as_tensor(model.feature_importances_, dtype=torch.float64).abs())
        accuracy.append(float((model.predict(test_codes) == test_factors[:, k].numpy()).mean()))
    R = torch.stack(importance, 1)  # (d, K)
    if R.sum() == 0:
        R = torch.ones_like(R)
    d, K = R.shape
    code_weight = R.sum(1) / R.sum()
    factor_weight = R.sum(0) / R.sum()
    disentanglement = float((code_weight * _one_minus_entropy(R, K)).sum()) if K > 1 else 1.0
    completeness = float((factor_weight * _one_minus_entropy(R.T, d)).sum()) if d > 1 else 1.0
    return DCIResult(disentanglement, completeness, sum(accuracy) / len(accuracy), R)


def total_correlation(loc: torch.Tensor, scale: torch.Tensor, *, num_samples: int = 2000, seed: int = 0,
                      chunk: int = 256) -> float:
    """TC = KL(q(z) || prod_j q(z_j)) in nats of the aggregate posterior of diagonal Gaussians
    q(z|x_n) = N(loc_n, diag(scale_n^2)), n = 1..N.

    ``num_samples`` draws z ~ q(z) (a random n, then z ~ q(z|x_n)); log q(z) and each log q(z_j)
    are the mixtures' log-densities over all N components (exact given the encodings; the estimate's
    error is Monte Carlo's in the outer expectation). For a VAE: ``q = vae.posterior(x)``,
    ``total_correlation(q.base_dist.loc, q.base_dist.scale)``.

    >>> import torch
    >>> loc = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0)) @ torch.tensor([[1.0, 0.9], [0.0, 0.4]])
    >>> tc = total_correlation(loc, torch.full_like(loc, 0.05), num_samples=500)
    >>> exact = -0.5 * math.log(1 - 0.9**2 / (0.9**2 + 0.4**2))  # a Gaussian with correlation 0.9 / 0.985
    >>> abs(tc - exact) < 0.1
    True
    """
    loc, scale = loc.double(), scale.double()
    n = loc.shape[0]
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randint(n, (num_samples,), generator=generator)
    z = loc[pick] + scale[pick] * torch.randn(num_samples, loc.shape[1], generator=generator, dtype=torch.float64)
    total = 0.0
    for part in z.split(chunk):
        # log N(z_ij; loc_nj, scale_nj) for every draw i, component n, dimension j: (i, n, j)
        log_q = torch.distributions.Normal(loc, scale).log_prob(part.unsqueeze(1))
        joint = torch.logsumexp(log_q.sum(-1), 1) - math.log(n)
        marginals = (torch.logsumexp(log_q, 1) - math.log(n)).sum(-1)
        total += float((joint - marginals).sum())
    return total / num_samples


def metric_table(results: dict[str, Sequence[float]]) -> str:
    """A markdown table of metric -> values over seeds: mean and standard deviation."""
    rows = ["| metric | mean | sd | values |", "|---|---|---|---|"]
    for name, values in results.items():
        t = torch.tensor(list(values), dtype=torch.float64)
        sd = float(t.std()) if len(t) > 1 else float("nan")
        rows.append(f"| {name} | {float(t.mean()):.3f} | {sd:.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class DisentanglementScores:
    """Everything the shapes study reports for one trained model (see :func:`disentanglement_scores`).

    :ivar reconstruction: E_q[log p(x|z)] per held-out observation (nats, K = 1);
    :ivar kl: KL(q(z|x) || p(z)) per observation; :ivar active_units: dimensions whose posterior mean
    varies (Burda et al.'s 0.01); :ivar total_correlation: of the aggregate posterior over the held-out
    observations (nats); :ivar mig, factorvae, dci: the metrics above (DCI's disentanglement), with
    :ivar dci_completeness: and :ivar dci_informativeness:; :ivar median_posterior_sd: over observations
    and dimensions (very small: the posteriors are tight, raise beta).
    """

    reconstruction: float
    kl: float
    active_units: int
    total_correlation: float
    mig: float
    factorvae: float
    dci: float
    dci_completeness: float
    dci_informativeness: float
    median_posterior_sd: float

    def as_dict(self) -> dict:
        return asdict(self)


def disentanglement_scores(model: Callable, guide: Callable, posterior: Callable, x: torch.Tensor,
                           truth: GroundTruth, *, seed: int = 0, mig_samples: int = 5000, votes: int = 500,
                           dci_train: int = 1000, dci_trees: int = 30, tc_samples: int = 2000
                           ) -> DisentanglementScores:
    """Score a trained latent-variable model on held-out observations ``x`` and on fresh draws of
    ``truth``'s factors: reconstruction, KL and active units (:func:`inference.evaluate`, K = 1), the
    aggregate total correlation, MIG, the FactorVAE score (``votes`` training votes, half as many to
    evaluate) and DCI (``dci_trees`` gradient-boosted trees of depth 3 per factor, ``dci_train`` codes
    to fit, half as many to test).

    :param posterior: ``x -> q(z|x)`` as a diagonal Gaussian (``Independent(Normal)``), e.g.
        ``vae.posterior``; its mean is the code the metrics read.

    >>> import torch
    >>> from pyro_vae import VAE
    >>> from pyro_vae.shapes import FACTOR_NAMES, FACTOR_SIZES, render
    >>> truth = GroundTruth(FACTOR_SIZES, render, FACTOR_NAMES)
    >>> vae = VAE((1, 64, 64), z_dim=4, hidden=(32,))  # untrained: its codes know little of the factors
    >>> x = render(truth.sample_factors(100, torch.Generator().manual_seed(0)))
    >>> s = disentanglement_scores(vae.model, vae.guide, vae.posterior, x, truth, mig_samples=500, votes=40,
    ...                            dci_train=200, dci_trees=5, tc_samples=200)
    >>> 0 <= s.mig < 0.5 and s.total_correlation >= -0.05 and s.active_units <= 4
    True
    """
    with torch.no_grad():
        q = posterior(x)
    if not (isinstance(q, torch.distributions.Independent) and isinstance(q.base_dist, torch.distributions.Normal)):
        raise ValueError(f"disentanglement_scores needs q(z|x) as a diagonal Gaussian, Independent(Normal), to "
                         f"estimate the total correlation; posterior(x) gave {type(q).__name__}. Pass a posterior "
                         f"of that family, or call mig/factorvae_score/dci with the encoder's means directly.")
    def encode(observations: torch.Tensor) -> torch.Tensor:
        return posterior(observations).mean

    scored = evaluate(model, guide, x, num_samples=1, ks=(1,), progress=False)
    d = dci(encode, truth, num_train=dci_train, num_test=dci_train // 2, seed=seed,
            classifier=gradient_boosting(n_estimators=dci_trees, max_depth=3))
    return DisentanglementScores(
        reconstruction=scored.reconstruction,
        kl=scored.kl,
        active_units=scored.active_units,
        total_correlation=total_correlation(q.base_dist.loc, q.base_dist.scale, num_samples=tc_samples, seed=seed),
        mig=mig(encode, truth, num_samples=mig_samples, seed=seed).score,
        factorvae=factorvae_score(encode, truth, num_train=votes, num_eval=votes // 2,
                                  num_variance_estimate=mig_samples, seed=seed).score,
        dci=d.disentanglement,
        dci_completeness=d.completeness,
        dci_informativeness=d.informativeness,
        median_posterior_sd=float(q.base_dist.scale.median()),
    )
