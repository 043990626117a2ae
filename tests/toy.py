"""A hand-written Pyro model and guide (no VAE): z ~ N(loc, 1), x | z ~ N(z, 1), q = N(w x, s)."""

import pyro
import pyro.distributions as dist
import torch


def model(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(loc, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    w = pyro.param("w", torch.tensor(0.2))
    s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(w * x, s))
