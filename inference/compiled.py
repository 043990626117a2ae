"""Capture a Pyro computation once as an aten graph and compile it.

Pyro pays about 1 ms of Python a step to run its messengers, traces and
distributions (``BENCHMARKS.md``). The arithmetic underneath is the same
every step for a *static* model and guide: the same sites, shapes and
operations. :class:`Captured` runs the real Python once under
:func:`torch.fx.experimental.proxy_tensor.make_fx`, which records only the
aten operations (random draws included: the graph draws fresh noise at each
call), with the parameters, the factors of :class:`~inference.scaling.ScaleSites`
handlers (beta and its schedule) and the data as graph inputs, and hands the
graph to :func:`torch.compile`. Later calls skip Python altogether.

With ``gradients=True`` the graph is the *joint* forward and backward pass:
autograd differentiates the loss while it is being traced, so the backward
operations are recorded as they run. This matters: the tracer records
``detach()`` as a plain alias, so a forward-only graph differentiated later
would lose every stop-gradient that the path-derivative estimators (STL,
DReG) and Pyro's surrogate losses rely on. The joint graph has them right
and needs no autograd at run time.

What is captured and what is not:

- Parameters are found by their identity: the tensors in ``params`` (the
  leaves that ``pyro.param`` and ``pyro.module`` hand out) become inputs; the
  optimizer updates them in place and the graph sees the new values. Every
  other tensor the model closes over (buffers, constants) is captured as a
  constant, so a model that changes a buffer in place (batch norm's running
  statistics) is not static.
- Numbers that change between calls must reach the graph as tensors:
  :class:`ScaleSites` factors do (they are filled into 0-d input tensors
  before each call); any other Python value read while capturing is frozen.
- A model that reads a tensor's value while it runs (``if x.sum() > 0``,
  ``.item()``, Pyro's validation) cannot be captured: :class:`NotStaticError`.
- The site structure (names, shapes, distributions, plates) is recorded at
  capture and compared with an eager run of the same computation on the
  next call and then every ``check_every`` calls (under a forked RNG, so
  the checks draw nothing from the run's random stream): a model whose
  structure changes between steps raises :class:`NotStaticError` instead of
  training a stale graph.
- Each new set of input shapes (the last, smaller batch of an epoch) is
  captured and compiled once more, and cached.

Random numbers: under ``compiler="graph"`` and ``"aot_eager"`` the graph
draws from torch's global generator in the same order as the eager code, so
the same seed gives the same draws; inductor (``"inductor"``) draws with its
own generator, seeded from torch's global one at each call, so a run is
reproducible from its seed and its RNG state (and resumes bitwise), but its
draws differ from eager ones. ``torch._inductor.config.fallback_random = True``
makes inductor draw as eager code does.

Compilers: ``"inductor"`` (fastest; compiles C++ or Triton kernels, tens of
seconds once per shape; on CUDA with ``mode="reduce-overhead"``, CUDA
graphs), ``"aot_eager"`` (AOTAutograd without code generation: seconds),
``"graph"`` (the captured graph run as it is: no compile time, about 10 %
faster than eager Pyro).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch.fx.experimental.proxy_tensor import make_fx

from inference.options import choose
from inference.scaling import ScaleSites

log = logging.getLogger(__name__)

CompilerName = Literal["inductor", "aot_eager", "graph"]


def _torch_compile(backend: str):
    def compile_graph(graph: torch.fx.GraphModule, mode: str | None):
        return torch.compile(graph, backend=backend, mode=mode, fullgraph=True, dynamic=False)

    return compile_graph


#: name -> (graph module, mode) -> callable
COMPILERS: dict[str, Callable] = {
    "inductor": _torch_compile("inductor"),
    "aot_eager": lambda graph, mode: _torch_compile("aot_eager")(graph, None),
    "graph": lambda graph, mode: graph,
}


def compiler_name(compile: bool | str) -> CompilerName | None:
    """``True`` -> ``"inductor"``, ``False`` -> ``None`` (eager), a name -> itself (validated)."""
    if compile is False or compile is None:
        return None
    name = "inductor" if compile is True else compile
    choose(COMPILERS, name, what="compiler")
    return name


class NotStaticError(RuntimeError):
    """The model or guide is not static, so a captured graph would compute the wrong thing."""


DROP_COMPILE = "run it eagerly (drop compile=True)"


class SiteRecorder(Messenger):
    """Record the structure of every sample and param site run inside it: what a captured graph fixes."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[tuple] = []

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "param":
            self.sites.append(("param", msg["name"]))
        elif msg["type"] == "sample":
            value = msg["value"]
            self.sites.append((
                "sample",
                msg["name"],
                bool(msg["is_observed"]),
                type(msg["fn"]).__name__,
                tuple(value.shape) if torch.is_tensor(value) else None,
                tuple((f.name, f.dim, f.size, f.full_size) for f in msg["cond_indep_stack"]),
            ))


def _describe_difference(captured: list[tuple], now: list[tuple]) -> str:
    for i, (a, b) in enumerate(zip(captured, now)):
        if a != b:
            return f"site {i} was {a} when captured and is {b} now"
    longer, which = (captured, "captured") if len(captured) > len(now) else (now, "current")
    return f"{len(captured)} sites when captured, {len(now)} now; the {which} run also has {longer[min(len(captured), len(now))]}"


class LossAndGradients(NamedTuple):
    """What a captured loss with ``gradients=True`` returns."""

    loss: torch.Tensor
    grads: list[torch.Tensor | None]
    grad_sum: torch.Tensor


@dataclass
class _Graph:
    compiled: Callable
    structure: list[tuple]
    has_grad: list[bool] | None = None  # per parameter, with gradients=True
    calls: int = 0


def find_params(fn: Callable, *args) -> list[torch.Tensor]:
    """The unconstrained parameter tensors that ``fn(*args)`` uses through ``pyro.param``
    and ``pyro.module``, in the order first used (one eager run, gradients off, RNG untouched)."""
    with torch.random.fork_rng(devices=_cuda_devices(args)), torch.no_grad(), pyro.validation_enabled(False):
        with poutine.trace(param_only=True) as capture:
            fn(*args)
    return [site["value"].unconstrained() for site in capture.trace.nodes.values()]


def _cuda_devices(args) -> list:
    return sorted({a.device for a in args if torch.is_tensor(a) and a.device.type == "cuda"}, key=str)


class Captured:
    """``fn(*args)`` captured once per input shape as an aten graph and compiled.

    :param fn: a function of tensors returning a tensor or a tuple/dict of
        tensors: typically an estimator's loss of a model and guide on a batch
        (see :func:`inference.graph_loss.graph_loss`).
    :param params: the parameter tensors ``fn`` reads (the optimizer's);
        found by :func:`find_params` on the first call if ``None``.
    :param gradients: ``fn`` returns a scalar loss; each call returns a
        :class:`LossAndGradients`: the loss, its gradients with respect to
        ``params`` (``None`` for a parameter the loss does not depend on) and
        their sum (non-finite if any entry is: a NaN guard's one number), all
        from the joint graph.
    :param scales: :class:`ScaleSites` handlers whose factors (e.g. a beta
        schedule) must stay live inputs of the graph.
    :param compiler: a key of :data:`COMPILERS`.
    :param mode: :func:`torch.compile`'s ``mode`` (inductor only), e.g.
        ``"reduce-overhead"`` for CUDA graphs.
    :param check_every: compare the site structure with an eager run on the
        second call and then every this many calls (``None``: never).
    :ivar compile_seconds: time spent capturing and compiling, all shapes.

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import Trace_ELBO
    >>> from inference.graph_loss import graph_loss
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.tensor(0.0))
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(loc, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> pyro.clear_param_store()
    >>> loss = graph_loss(Trace_ELBO())
    >>> step = Captured(lambda x: loss(model, guide, x), gradients=True, compiler="graph")
    >>> x = torch.tensor([0.5, -1.0, 2.0])
    >>> pyro.set_rng_seed(0); value, (grad,), _ = step(x)  # captured: the same draws as eager Pyro
    >>> pyro.set_rng_seed(0); eager = Trace_ELBO().differentiable_loss(model, guide, x)
    >>> eager.backward()
    >>> bool(torch.isclose(value, eager)), bool(torch.isclose(grad, pyro.param("loc").grad))
    (True, True)
    >>> _ = step(torch.zeros(5)); step.num_graphs  # a new batch shape is captured once more
    2
    """

    def __init__(
        self,
        fn: Callable,
        *,
        params: Sequence[torch.Tensor] | None = None,
        gradients: bool = False,
        scales: Sequence[ScaleSites] = (),
        compiler: CompilerName = "inductor",
        mode: str | None = None,
        check_every: int | None = 200,
    ) -> None:
        self.fn = fn
        self.params = list(params) if params is not None else None
        self.scales = list(scales)
        self.gradients = gradients
        self.compile_graph = choose(COMPILERS, compiler, what="compiler")
        self.compiler, self.mode, self.check_every = compiler, mode, check_every
        self.compile_seconds = 0.0
        self._graphs: dict[tuple, _Graph] = {}
        self._factors: dict[tuple, list[torch.Tensor]] = {}

    @property
    def num_graphs(self) -> int:
        """How many input shapes have been captured."""
        return len(self._graphs)

    def __call__(self, *args: torch.Tensor):
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        graph = self._graphs.get(key)
        factors = self._fill_factors(args[0])
        if graph is None:
            started = time.perf_counter()
            graph = self._graphs[key] = self._capture(args, factors)
            out = self._run(graph, factors, args)
            self.compile_seconds += time.perf_counter() - started
            log.info("captured and compiled a graph for input shapes %s in %.1f s", [k[0] for k in key],
                     time.perf_counter() - started)
            return out
        if self.check_every and (graph.calls == 1 or graph.calls % self.check_every == 0):
            self.check(graph, args, factors)
        return self._run(graph, factors, args)

    def _run(self, graph: _Graph, factors, args):
        graph.calls += 1
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        if not self.gradients:
            return graph.compiled(*self.params, *factors, *args)
        with torch.no_grad():  # the joint graph holds the backward pass: nothing to differentiate at run time
            out = graph.compiled(*self.params, *factors, *args)
        value, grads, grad_sum = out
        grads = iter(grads)
        return LossAndGradients(value, [next(grads) if has else None for has in graph.has_grad], grad_sum)

    def _factor_sites(self) -> list[tuple[ScaleSites, str]]:
        return [(handler, name) for handler in self.scales for name in handler.scales]

    def _fill_factors(self, like: torch.Tensor) -> list[torch.Tensor]:
        """0-d tensors holding each handler's current factors (validated as numbers), on the
        data's device and in its floating dtype, so that they promote nothing."""
        sites = self._factor_sites()
        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        factors = self._factors.get((like.device, dtype))
        if factors is None:
            factors = [torch.zeros((), dtype=dtype, device=like.device) for _ in sites]
            self._factors[like.device, dtype] = factors
        for tensor, (handler, name) in zip(factors, sites):
            tensor.fill_(handler.factor(name))
        return factors

    @contextlib.contextmanager
    def _given(self, factors):
        with contextlib.ExitStack() as stack:
            sites = self._factor_sites()
            for handler in self.scales:
                given = {name: f for f, (h, name) in zip(factors, sites) if h is handler}
                stack.enter_context(handler.given(given))
            yield

    def _capture(self, args, factors) -> _Graph:
        if self.params is None:
            self.params = find_params(self.fn, *args)
        params, n_params, n_factors = self.params, len(self.params), len(factors)
        recorder = SiteRecorder()
        has_grad = None

        def flat_fn(*flat):
            nonlocal has_grad
            with self._given(flat[n_params : n_params + n_factors]), recorder:
                out = self.fn(*flat[n_params + n_factors :])
            if not self.gradients:
                return out
            grads = torch.autograd.grad(out, params, allow_unused=True)
            has_grad = [g is not None for g in grads]
            grads = [g for g in grads if g is not None]
            grad_sum = torch.stack([g.sum().to(out.dtype) for g in grads]).sum() if grads else out.new_zeros(())
            return out.detach(), grads, grad_sum

        try:  # the tracing run draws random numbers: leave the run's stream as it was
            with torch.random.fork_rng(devices=_cuda_devices(args)), pyro.validation_enabled(False):
                graph = make_fx(flat_fn)(*params, *factors, *args)
        except RuntimeError as error:
            if "data-dependent" in str(error) or "_local_scalar_dense" in str(error):
                raise NotStaticError(
                    "the model or guide reads a tensor's value while it runs (data-dependent Python control flow, "
                    f".item(), bool(tensor)), so its computation cannot be captured as one graph: {DROP_COMPILE}"
                ) from error
            raise
        return _Graph(self.compile_graph(graph, self.mode), recorder.sites, has_grad)

    def check(self, graph: _Graph, args, factors) -> None:
        """Run ``fn`` eagerly (no gradients, forked RNG) and compare its site structure with the captured one."""
        recorder = SiteRecorder()
        with torch.random.fork_rng(devices=_cuda_devices(args)), torch.no_grad(), pyro.validation_enabled(False):
            with self._given(factors), recorder:
                self.fn(*args)
        if recorder.sites != graph.structure:
            raise NotStaticError(
                f"the model's structure changed after its step was captured ({_describe_difference(graph.structure, recorder.sites)}), "
                f"so the compiled graph no longer computes its loss: models with Python control flow, a changing "
                f"set of sites or a random number of sites cannot be compiled; {DROP_COMPILE}"
            )
