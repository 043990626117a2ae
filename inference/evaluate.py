"""Judge any model/guide pair on a data set: the ELBO and its two terms, the
importance-weighted log p(x), the IWAE-k curve, KL per latent dimension,
active units and the mutual information I(x; z).

References: Burda et al. 2016 (importance-weighted bound, active units);
Hoffman & Johnson 2016 (ELBO surgery: I(x; z) under the aggregate posterior).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from pyro import poutine

from inference.batching import args_to, as_args, as_dataset
from inference.free_bits import kl_per_dim
from inference.weights import iter_log_weights, particle_traces


@dataclass(frozen=True)
class Evaluation:
    """Dataset means in nats per datum, with standard errors over the data.

    :ivar log_px: the importance-weighted estimate of log p(x) with
        ``num_samples`` samples (a lower bound in expectation, tight as K grows).
    :ivar elbo: the ELBO, estimated with the same samples.
    :ivar reconstruction: E_q[log p(x|z)]; ``elbo = reconstruction - kl``.
    :ivar kl: E_q[log q(z|x) - log p(z)].
    :ivar iwae_curve: k -> the k-sample bound IWAE_k (k dividing ``num_samples``).
    :ivar latent_variance: per latent dimension, Cov_x(E_q[z_u | x]).
    :ivar active_units: how many dimensions have ``latent_variance > 0.01``.
    :ivar per_datum: ``"log_px"``, ``"elbo"`` and each k of the curve -> the datum-by-datum
        values (1-D, float64, in the data set's order), whose means are the fields above: for
        paired comparisons (two models, or two bounds, on the same data), whose standard error
        is far smaller than that of each mean.
    :ivar active_units_by_site: the same count for every latent site of the guide
        (a hierarchical model's layers: Burda et al. report them per layer). For a
        layer whose guide depends on draws of the layers below, E_q[z_u | x] is the
        average of its conditional means over the ``num_samples`` draws, so a small
        K adds their noise to the variance and overcounts active units.
    """

    num_data: int
    num_samples: int
    log_px: float
    log_px_se: float
    elbo: float
    elbo_se: float
    reconstruction: float
    kl: float
    iwae_curve: dict[int, float]
    latent_variance: list[float]
    active_units: int
    seconds: float
    kl_per_dim: list[float] | None = None
    mutual_information: float | None = None
    active_units_by_site: dict[str, int] = field(default_factory=dict)
    per_datum: dict[str | int, torch.Tensor] = field(default_factory=dict, repr=False)
    extra: dict = field(default_factory=dict)


def _logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


@torch.no_grad()
def evaluate(
    model,
    guide,
    data,
    *,
    num_samples: int = 5000,
    ks: Sequence[int] = (1, 10, 100, 1000, 5000),
    budget: int = 2**16,
    latent_site: str = "z",
    mi_data: int = 1000,
    max_plate_nesting: int = 1,
    device: str | torch.device | None = None,
    progress: bool = True,
    compile: bool | str = False,
) -> Evaluation:
    """Score ``model``/``guide`` on every datum of ``data`` (a tensor or a data set).

    Each datum gets ``num_samples`` guide samples, drawn in vectorized passes
    of at most ``budget`` (samples x data) particles, so that peak memory
    is bounded by ``budget`` whatever ``num_samples`` is.

    :param ks: the k of the IWAE-k curve; each k must divide ``num_samples``
        (the K samples are split into K/k groups, whose bounds are averaged).
    :param latent_site: the site for KL per dimension, active units and I(x; z).
    :param mi_data: how many data points estimate I(x; z) (its cost grows as
        their square).
    :param compile: capture the log-weight passes once per shape and compile
        them (``True`` for inductor, or a compiler's name; see
        :mod:`inference.compiled`): for the long K = 5000 evaluations of a
        static model. The first pass pays the compile time.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))  # the exact posterior
    >>> x = torch.linspace(-2, 2, 50)
    >>> result = evaluate(model, guide, x, num_samples=100, ks=(1, 10), progress=False)
    >>> exact = dist.Normal(0.0, 2**0.5).log_prob(x).mean().item()
    >>> abs(result.log_px - exact) < 1e-5
    True
    """
    data = as_dataset(data)
    n = len(data)
    ks = [k for k in ks if k <= num_samples]
    bad = [k for k in ks if num_samples % k]
    if bad:
        raise ValueError(f"every k of the IWAE curve must divide num_samples={num_samples}; {bad} do not")
    start = time.perf_counter()
    sums = {"log_px": [], "elbo": [], "rec": [], "kl": [], **{k: [] for k in ks}}
    means: dict[str, list[torch.Tensor]] = {}
    batches = iter_log_weights(model, guide, data, num_samples=num_samples, budget=budget,
                               max_plate_nesting=max_plate_nesting, device=device, progress=progress, desc="evaluate",
                               compile=compile)
    for x, w in batches:
        log_w = w.log_w  # (K, b)
        sums["log_px"].append(_logmeanexp(log_w))
        sums["elbo"].append(log_w.mean(0))
        sums["rec"].append(w.log_lik.mean(0))
        sums["kl"].append((w.log_q - w.log_prior).mean(0))
        for k in ks:
            sums[k].append(_logmeanexp(log_w.reshape(num_samples // k, k, -1), dim=1).mean(0))
        for site, mean in w.latent_means.items():
            means.setdefault(site, []).append(mean.reshape(x.shape[0], -1).double().cpu())
    per_datum = {key: torch.cat(values).cpu() for key, values in sums.items()}
    variances = {site: torch.cat(m).var(0, unbiased=False).tolist() for site, m in means.items()}
    latent_variance = variances.get(latent_site, [])
    sample = args_to(as_args(data.batch(torch.arange(min(n, mi_data)))), device)
    return Evaluation(
        num_data=n,
        num_samples=num_samples,
        log_px=per_datum["log_px"].mean().item(),
        log_px_se=_standard_error(per_datum["log_px"]),
        elbo=per_datum["elbo"].mean().item(),
        elbo_se=_standard_error(per_datum["elbo"]),
        reconstruction=per_datum["rec"].mean().item(),
        kl=per_datum["kl"].mean().item(),
        iwae_curve={k: per_datum[k].mean().item() for k in ks},
        latent_variance=latent_variance,
        active_units=sum(v > 0.01 for v in latent_variance),
        seconds=time.perf_counter() - start,
        kl_per_dim=kl_per_dimension(model, guide, *sample, site=latent_site, max_plate_nesting=max_plate_nesting),
        mutual_information=mutual_information(guide, *sample, site=latent_site),
        active_units_by_site={site: sum(v > 0.01 for v in var) for site, var in variances.items()},
        per_datum={key: per_datum[key] for key in ("log_px", "elbo", *ks)},
    )


def _standard_error(values: torch.Tensor) -> float:
    return (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")


@dataclass(frozen=True)
class Difference:
    """The mean over the same data of ``a - b``, two scores datum by datum, and its errors.

    :ivar mean: mean(a) - mean(b), nats per datum.
    :ivar se: its paired standard error, ``std(a - b) / sqrt(n)``: the one to quote when both were
        scored on the same data, since what makes one datum hard makes it hard for both.
    :ivar unpaired_se: ``sqrt(se(a)^2 + se(b)^2)``, what the two means' own errors give.
    :ivar correlation: the correlation of a and b over the data, which makes the two differ.
    """

    mean: float
    se: float
    unpaired_se: float
    correlation: float
    num_data: int


def paired_difference(a, b, key: str = "log_px") -> Difference:
    """Compare two scores of the same data datum by datum: two models, or two bounds of one.

    ``a`` and ``b`` are :class:`Evaluation` results (their ``per_datum[key]``) or 1-D tensors of
    per-datum values, in the same order of the same data.

    >>> a = torch.tensor([-80.0, -95.0, -110.0, -88.0])
    >>> d = paired_difference(a, a - torch.tensor([1.0, 1.2, 0.8, 1.0]))
    >>> round(d.mean, 3), round(d.se, 3), d.unpaired_se > 10 * d.se
    (1.0, 0.082, True)
    """
    a, b = (x.per_datum[key] if isinstance(x, Evaluation) else torch.as_tensor(x) for x in (a, b))
    a, b = a.double().flatten(), b.double().flatten()
    if len(a) != len(b):
        raise ValueError(f"a paired difference needs the same data scored twice: {len(a)} scores against {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired difference needs at least two data, got {len(a)}")
    correlation = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    return Difference(mean=(a - b).mean().item(), se=_standard_error(a - b),
                      unpaired_se=math.hypot(_standard_error(a), _standard_error(b)),
                      correlation=correlation, num_data=len(a))


@torch.no_grad()
def kl_per_dimension(
    model, guide, *args: torch.Tensor, site: str = "z", num_samples: int = 32, max_plate_nesting: int = 1
) -> list[float] | None:
    """KL(q(z_u|x) || p(z_u)) per latent dimension u, averaged over ``x``.

    Defined when q and p both factorize over the dimensions (diagonal
    Gaussians and the like): analytic where ``kl_divergence`` is registered,
    Monte Carlo with ``num_samples`` draws otherwise. ``None`` when either
    does not factorize (a full-covariance guide, a mixture prior).
    """
    model_trace, guide_trace = particle_traces(model, guide, *args, num_samples=num_samples,
                                               max_plate_nesting=max_plate_nesting)
    if site not in guide_trace.nodes or site not in model_trace.nodes:
        return None
    try:
        kl = kl_per_dim(model_trace.nodes[site], guide_trace.nodes[site])
    except ValueError:  # q or p does not factorize over the dimensions
        return None
    return kl.reshape(-1, kl.shape[-1]).mean(0).tolist()


@torch.no_grad()
def mutual_information(guide, *args: torch.Tensor, site: str = "z") -> float | None:
    """I(x; z) under the aggregate posterior q(z) = (1/M) sum_j q(z|x_j) of the
    M data in ``x`` (Hoffman & Johnson 2016): E[log q(z_i|x_i) - log q(z_i)]
    with one z_i ~ q(z|x_i) per datum. It is at most log M.
    """
    trace = poutine.trace(guide).get_trace(*args)
    if site not in trace.nodes:
        return None
    q, z = trace.nodes[site]["fn"], trace.nodes[site]["value"]
    if q.batch_shape != z.shape[: len(q.batch_shape)] or len(q.batch_shape) != 1:
        return None
    pairwise = q.log_prob(z.unsqueeze(1))  # [i, j] = log q(z_i | x_j)
    own = pairwise.diagonal()
    aggregate = torch.logsumexp(pairwise, dim=1) - math.log(len(z))
    return (own - aggregate).mean().item()
