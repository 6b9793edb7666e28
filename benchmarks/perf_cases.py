"""One measurement of ``benchmarks/performance.py``, run inside a fresh Python process.

Everything here runs in a child process started by ``performance.py`` (one per
case, contender and repeat), so that every figure includes what a user pays
in a new session: graph building, XLA compilation and warm-up. Imports of
PyMC / NumPyro are timed separately (``import_s``) and are not part of the
headline figure.

Contenders of a NUTS case:

``bnncat``
    ``net.fit(X, y, ...)`` with the catalogue's defaults (NUTS on numpyro,
    float32, the persistent compilation cache). ``performance.py`` fits each
    catalogue contender once before the measured repeats, so that the cache
    holds its programs, as it does from a user's second fit of a model on.
``bnncat-cold``
    The same with the cache switched off (``BNNCAT_JAX_CACHE=off``): the first
    fit of a model on a machine, compiling everything.
``bnncat-f64``
    The defaults but ``precision="float64"`` (PyMC's precision), cache on.
``numpyro``
    A hand-written NumPyro model of the same network, priors and data, written
    the way NumPyro's own BNN example is written (``examples/bnn.py``): explicit
    layers, ``numpyro.sample`` sites, ``MCMC(NUTS(model))`` with the same chains,
    ``chain_method``, warm-up and draws. NumPyro's default precision (float32).
``numpyro-f64``
    The same hand-written model with ``jax_enable_x64`` (float64, PyMC's default).
``pymc``
    ``pm.sample(nuts_sampler="pymc")`` on the catalogue's model: PyMC's own NUTS.
``ordered`` / ``mixture`` / ``mlp``
    ``OrderedMLP`` / ``MixtureRegressor`` / plain ``MLP`` fits (case iv).

How the wall time is split (the same method on every NUTS contender):

* ``compile_s``: time spent in JAX tracing, lowering and XLA compilation, from
  JAX's own monitoring events (union of their time spans).
* ``warmup_s`` / ``sampling_s``: NumPyro reports progress from inside the
  compiled loop at fixed iteration counts (``progress_bar=True``, the default of
  both NumPyro and ``fit``); the harness replaces the progress bar by a recorder
  of those time stamps and interpolates, per chain, when the chain passed the
  last warm-up iteration. The loop's wall time is split by the mean fraction
  of time the chains spent in warm-up. PyMC's own NUTS records the wall time of
  every draw (``perf_counter_start`` / ``perf_counter_diff``) and is split the
  same way from those.
* ``setup_s`` = total − warm-up − sampling: model building, compilation,
  initial points, moving draws back and building the result.
"""

import os
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class NutsCase:
    """A NUTS comparison: a network, a data set, sampler settings and contenders."""

    name: str
    title: str
    data: str
    hidden: tuple[int, ...]
    prior: str = "lecun"
    chains: int = 4
    tune: int = 1000
    draws: int = 1000
    # PyMC's own NUTS is far slower: a shorter run, its ESS/s scaled by its own wall time
    pymc_tune: int = 500
    pymc_draws: int = 500
    contenders: tuple[str, ...] = ("bnncat", "numpyro", "pymc")
    reference: str = "numpyro"  # the peer whose figure is the denominator of the ratio
    n: int | None = None  # rows of synthetic data
    # PyMC too slow for an ESS: its ESS/s ratio estimated from gradient throughput
    pymc_from_gradients: bool = False


NUTS_CASES: dict[str, NutsCase] = {
    c.name: c
    for c in (
        NutsCase(
            "i",
            "NumPyro BNN example: 2x5 tanh, N=100, 3 inputs",
            "numpyro_example",
            (5, 5),
            prior="fixed",
            tune=1000,
            draws=2000,
            pymc_tune=300,
            pymc_draws=300,
            contenders=("bnncat", "numpyro", "pymc", "bnncat-cold"),
        ),
        NutsCase(
            "ii",
            "1x16 tanh on mcycle (N=133)",
            "mcycle",
            (16,),
            contenders=("bnncat", "numpyro", "pymc", "bnncat-cold", "bnncat-f64"),
        ),
        # NUTS saturates the tree depth here (1023 gradients per draw): short runs
        NutsCase(
            "iii",
            "2x32 tanh, synthetic N=2000",
            "synthetic",
            (32, 32),
            tune=100,
            draws=100,
            # PyMC's own NUTS takes ~1.4 ms of wall time per gradient here: 20 iterations
            # measure its gradient throughput; its ESS/s ratio is estimated from that
            pymc_tune=10,
            pymc_draws=10,
            pymc_from_gradients=True,
            contenders=("bnncat", "numpyro", "pymc", "bnncat-cold"),
            n=2000,
        ),
        NutsCase(
            "iv",
            "OrderedMLP and MixtureRegressor against the plain MLP: 1x8 tanh on mcycle",
            "mcycle",
            (8,),
            contenders=("mlp", "ordered", "mixture"),
            reference="mlp",
        ),
        # accelerator: case (iii) and a 2x256 net on N=50,000 (JAX contenders only)
        NutsCase(
            "gpu",
            "2x256 tanh, synthetic N=50,000 (accelerator)",
            "synthetic",
            (256, 256),
            tune=100,
            draws=100,
            contenders=("bnncat", "numpyro"),
            n=50_000,
        ),
    )
}

QUICK = {"chains": 2, "tune": 100, "draws": 100, "pymc_tune": 50, "pymc_draws": 50}
#: Held-out inputs at which the ESS of the network output is measured (realistic cases).
PROBES = 50


@dataclass(frozen=True)
class Problem:
    """Data of a case: training rows, probe rows for the predictions, description."""

    X: np.ndarray
    y: np.ndarray
    X_probe: np.ndarray
    note: str = field(default="")


def numpyro_example_data(n: int = 100, d_x: int = 3, sigma_obs: float = 0.05) -> Problem:
    """Return the data of NumPyro's ``examples/bnn.py`` (``get_data``), in NumPy.

    Inputs are the powers (1, x, x^2) of a grid on [-1, 1]; targets a cubic-ish
    curve plus noise, standardised. Probe inputs: 50 points on [-1.3, 1.3] (the
    example's test grid).
    """
    rng = np.random.RandomState(0)  # the example calls np.random.seed(0)
    x = np.linspace(-1, 1, n)
    X = np.power(x[:, None], np.arange(d_x))
    W = 0.5 * rng.randn(d_x)
    y = X @ W + 0.5 * np.power(0.5 + X[:, 1], 2.0) * np.sin(4.0 * X[:, 1])
    y = y + sigma_obs * rng.randn(n)
    y = (y - y.mean()) / y.std()
    x_probe = np.linspace(-1.3, 1.3, 50)
    return Problem(X, y, np.power(x_probe[:, None], np.arange(d_x)), "numpyro examples/bnn.py")


def synthetic_data(n: int, d_x: int = 3, seed: int = 0) -> Problem:
    """Return a smooth function of 3 inputs plus noise sd 0.1; probes: 50 training rows."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, d_x))
    f = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 - 0.5 * X[:, 0] * X[:, 2]
    y = f + 0.1 * rng.normal(size=n)
    probe = X[rng.choice(n, size=min(50, n), replace=False)]
    return Problem(X, y, probe, f"synthetic, N={n}")


def load_problem(case: NutsCase) -> Problem:
    """Return the data of ``case``."""
    if case.data == "numpyro_example":
        return numpyro_example_data()
    if case.data == "synthetic":
        return synthetic_data(case.n or 2000)
    from bnncat import data

    ds = data.load(case.data)
    probe = np.linspace(ds.X.min(), ds.X.max(), 50)[:, None]
    return Problem(np.asarray(ds.X), np.asarray(ds.y), probe, case.data)


def catalogue_net(case: NutsCase, contender: str = "bnncat"):
    """Return the catalogue model of ``case`` (``contender`` picks the class in case iv)."""
    from bnncat.models import MLP, MixtureRegressor, OrderedMLP

    if contender == "ordered":
        return OrderedMLP(hidden=case.hidden, activation="tanh", prior=case.prior)
    if contender == "mixture":
        return MixtureRegressor(
            hidden=case.hidden, activation="tanh", prior=case.prior, n_components=2
        )
    return MLP(hidden=case.hidden, activation="tanh", prior=case.prior)


# --------------------------------------------------------------------------- the peer


def numpyro_mlp(X, y=None, *, hidden, prior="lecun", prior_scale=2.0, bias_scale=1.0):
    """Define a tanh MLP regressor by hand in NumPyro, like ``examples/bnn.py``.

    The same network, priors and noise model as the catalogue's ``MLP`` on
    standardised data: weights Normal(0, s) with s = ``prior_scale`` (``fixed``)
    or ``prior_scale / sqrt(fan_in)`` (``lecun``), biases Normal(0,
    ``bias_scale``), noise sd HalfNormal(1). NumPyro's example has no biases and
    a Gamma(3, 1) noise precision; the catalogue always has biases and a
    half-normal noise sd, so the peer follows the catalogue (see the README).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    h, fan_in = X, X.shape[1]
    widths = list(hidden)
    for layer, width in enumerate(widths, start=1):
        sd = prior_scale / np.sqrt(fan_in) if prior == "lecun" else prior_scale
        W = numpyro.sample(f"W{layer}", dist.Normal(0.0, sd).expand([fan_in, width]).to_event(2))
        b = numpyro.sample(f"b{layer}", dist.Normal(0.0, bias_scale).expand([width]).to_event(1))
        h = jnp.tanh(h @ W + b)
        fan_in = width
    sd = prior_scale / np.sqrt(fan_in) if prior == "lecun" else prior_scale
    W = numpyro.sample("W_out", dist.Normal(0.0, sd).expand([fan_in, 1]).to_event(2))
    b = numpyro.sample("b_out", dist.Normal(0.0, bias_scale).expand([1]).to_event(1))
    mu = (h @ W + b)[:, 0]
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


# --------------------------------------------------------------------------- instrumentation


class CompileClock:
    """Wall time JAX spends tracing, lowering and compiling (its monitoring events)."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        import jax.monitoring

        self.spans: list[tuple[float, float]] = []
        jax.monitoring.register_event_time_span_listener(self._record)

    def _record(self, event: str, start: float, end: float, **kwargs: Any) -> None:
        if event in self.EVENTS:
            self.spans.append((start, end))

    def seconds(self, t_from: float, t_to: float) -> float:
        """Union of the recorded spans inside [t_from, t_to] (``time.time`` clock)."""
        spans = sorted((max(s, t_from), min(e, t_to)) for s, e in self.spans if e > t_from)
        total, cur = 0.0, None
        for s, e in spans:
            if s >= e:
                continue
            if cur is None or s > cur[1]:
                total += 0.0 if cur is None else cur[1] - cur[0]
                cur = [s, e]
            else:
                cur[1] = max(cur[1], e)
        return total + (0.0 if cur is None else cur[1] - cur[0])


class ProgressRecorder:
    """Stands in for NumPyro's tqdm bars and records when each chain reports progress."""

    bars: list["ProgressRecorder"] = []

    def __init__(self, iterable=None, *args: Any, **kwargs: Any) -> None:
        self.total = len(iterable) if iterable is not None else kwargs.get("total", 0)
        self.n = 0
        self.events: list[tuple[float, int]] = []
        ProgressRecorder.bars.append(self)

    def set_description(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        pass

    def update(self, k: int = 1) -> None:  # noqa: D102
        self.n += int(k)
        self.events.append((time.perf_counter(), self.n))

    def close(self) -> None:  # noqa: D102
        self.events.append((time.perf_counter(), self.n))

    @classmethod
    def install(cls) -> None:
        """Make NumPyro's multi-chain progress bars record instead of print."""
        import numpyro.util

        cls.bars = []
        numpyro.util.tqdm_auto = cls

    @classmethod
    def split(cls, warmup_iterations: int) -> tuple[float, float]:
        """Warm-up and sampling wall time of the last run, from the recorded bars."""
        bars = [b for b in cls.bars if len(b.events) >= 2]
        if not bars:
            return float("nan"), float("nan")
        fractions = []
        for bar in bars:
            t, n = np.array([e[0] for e in bar.events]), np.array([e[1] for e in bar.events])
            t_warm = np.interp(warmup_iterations, n, t)
            fractions.append((t_warm - t[0]) / max(t[-1] - t[0], 1e-12))
        loop = max(b.events[-1][0] for b in bars) - min(b.events[0][0] for b in bars)
        frac = float(np.clip(np.mean(fractions), 0.0, 1.0))
        return frac * loop, (1 - frac) * loop


def split_from_pymc_stats(idata) -> tuple[float, float]:
    """Warm-up and sampling wall time of a PyMC NUTS run from its per-draw timings."""
    warm, post = idata["warmup_sample_stats"], idata["sample_stats"]
    w_start = warm["perf_counter_start"].values  # (chain, draw)
    p_start, p_diff = post["perf_counter_start"].values, post["perf_counter_diff"].values
    t0, t1 = w_start[:, 0], p_start[:, -1] + p_diff[:, -1]
    fractions = (p_start[:, 0] - t0) / (t1 - t0)
    loop = t1.max() - t0.min()
    frac = float(np.mean(fractions))
    return frac * loop, (1 - frac) * loop


def peak_rss_mb() -> float:
    """Peak resident memory of this process or its largest child (Linux reports KiB).

    PyMC's own NUTS samples in worker processes; their peak counts too.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


# --------------------------------------------------------------------------- measurements


def _probe_metrics(net, spec, params: dict, X_probe: np.ndarray) -> dict[str, float]:
    """Min bulk ESS and max R-hat of the network output at the probe inputs."""
    import arviz as az
    import xarray as xr

    mu = net.forward(params, X_probe, spec)
    ds = xr.Dataset({"mu": (("chain", "draw", "probe", "output"), mu)})
    out = {"min_ess_bulk": float(az.ess(ds, method="bulk")["mu"].min())}
    out["max_rhat"] = float(az.rhat(ds)["mu"].max()) if mu.shape[0] > 1 else float("nan")
    return out


def standardise(X: np.ndarray, y: np.ndarray):
    """Standardise as the catalogue's models do (``DataSpec``), in plain NumPy."""
    x_loc, x_scale = X.mean(0), X.std(0)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    return (X - x_loc) / x_scale, (y - y.mean()) / y.std()


def chain_method(chains: int) -> str:
    """Apply the rule of ``bnncat.models.inference.nuts.numpyro_chain_method`` (without PyMC)."""
    import jax

    if jax.local_device_count() >= chains:
        return "parallel"
    return "vectorized" if jax.default_backend() != "cpu" else "sequential"


CATALOGUE = ("bnncat", "bnncat-cold", "bnncat-f64", "mlp", "ordered", "mixture")
#: catalogue contenders that read the persistent compilation cache (primed before timing)
CACHED = tuple(c for c in CATALOGUE if c != "bnncat-cold")


def run_nuts(case_name: str, contender: str, seed: int, quick: bool) -> dict:
    """Fit one contender of a NUTS case and measure it (in this fresh process)."""
    t_import = time.perf_counter()
    import jax
    import numpyro  # noqa: F401

    import bnncat  # noqa: F401  (sets the XLA host device count before JAX starts)

    if contender in CATALOGUE or contender == "pymc":
        import pymc  # noqa: F401  (its import is timed here, not in the fit)

        from bnncat.models.inference import nuts

        assert nuts.numpyro_chain_method(2) == chain_method(2)
        # the progress bars a terminal or notebook shows, as the peer's: their updates are
        # the harness's clock (a child's captured stderr would get heartbeat lines instead)
        nuts.writes_to_log = lambda: False
    import_s = time.perf_counter() - t_import

    clock = CompileClock()
    ProgressRecorder.install()
    case = NUTS_CASES[case_name]
    settings = {k: getattr(case, k) for k in ("chains", "tune", "draws")}
    if contender == "pymc":
        settings |= {"tune": case.pymc_tune, "draws": case.pymc_draws}
    if quick:
        settings = {k: QUICK[k] for k in settings}
        if contender == "pymc":
            settings |= {"tune": QUICK["pymc_tune"], "draws": QUICK["pymc_draws"]}
    problem = load_problem(case)
    row: dict[str, Any] = {
        "case": case_name,
        "contender": contender,
        "seed": seed,
        "n_obs": int(problem.X.shape[0]),
        "hidden": "x".join(map(str, case.hidden)),
        **settings,
        "device": jax.default_backend(),
        "import_s": import_s,
    }
    y = np.asarray(problem.y, dtype=np.float64)
    if contender in CATALOGUE:
        fit = _fit_catalogue
    elif contender.startswith("numpyro"):
        fit = _fit_numpyro
    elif contender == "pymc":
        fit = _fit_pymc
    else:
        raise ValueError(f"unknown contender {contender!r}")
    wall0 = time.time()
    fitted = fit(case, contender, problem, y, settings, seed)
    total, params, n_steps = fitted["total"], fitted["params"], fitted["n_steps"]
    warm_s, samp_s = fitted["warm_s"], fitted["samp_s"]
    row["precision"] = fitted["precision"]
    wall1 = time.time()
    row["peak_rss_mb"] = peak_rss_mb()  # before the metrics below import anything more
    net = catalogue_net(case, contender if contender in CATALOGUE else "bnncat")
    _, _, spec = net.data_spec(problem.X, y)
    row |= _probe_metrics(net, spec, params, problem.X_probe)
    row |= {
        "total_s": total,
        # PyTensor's C compilation (PyMC's own NUTS) is not a JAX event: not measured
        "compile_s": clock.seconds(wall0, wall1) if contender != "pymc" else float("nan"),
        "warmup_s": warm_s,
        "sampling_s": samp_s,
        "setup_s": total - warm_s - samp_s,
        "grad_evals": int(np.sum(n_steps)),
        "grad_per_s": float(np.sum(n_steps)) / samp_s,
        "mean_tree_steps": float(np.mean(n_steps)),
        "divergences": fitted["diverging"],
    }
    row["ess_per_s"] = row["min_ess_bulk"] / total
    if contender != "pymc":  # PyMC's NUTS runs PyTensor's C code: no JAX reference
        row |= gradient_overhead(case, contender, problem, row)
    return row


def _fit_catalogue(case, contender, problem, y, settings, seed) -> dict:
    """``net.fit`` with the catalogue's defaults (the cache off for ``bnncat-cold``)."""
    import json

    t0 = time.perf_counter()
    net = catalogue_net(case, contender)
    options = {"precision": "float64"} if contender == "bnncat-f64" else {}
    if contender == "bnncat-cold":
        from bnncat.models.jax_runtime import CACHE_ENV

        os.environ[CACHE_ENV] = "off"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fit's convergence advice; the table reports it
        idata = net.fit(
            problem.X,
            y,
            random_seed=seed,
            progressbar=chain_method(settings["chains"]) == "parallel",
            **settings,
            **options,
        )
    total = time.perf_counter() - t0
    warm_s, samp_s = ProgressRecorder.split(settings["tune"])
    precision = json.loads(idata.attrs["bnncat_fit"]).get("precision") or "float64"
    return _idata_draws(idata) | {
        "total": total,
        "warm_s": warm_s,
        "samp_s": samp_s,
        "precision": precision,
    }


def _fit_numpyro(case, contender, problem, y, settings, seed) -> dict:
    """Sample the hand-written NumPyro model by ``MCMC(NUTS(...))`` (``numpyro-f64``: x64)."""
    import jax
    from numpyro.infer import MCMC, NUTS

    t0 = time.perf_counter()
    x64 = contender == "numpyro-f64"
    jax.config.update("jax_enable_x64", x64)
    dtype = np.float64 if x64 else np.float32
    Xs, ys = standardise(np.asarray(problem.X, dtype=np.float64), y)
    chains = settings["chains"]
    mcmc = MCMC(
        NUTS(numpyro_mlp, target_accept_prob=0.8),
        num_warmup=settings["tune"],
        num_samples=settings["draws"],
        num_chains=chains,
        chain_method=chain_method(chains),
        # NumPyro's default; with one bar per chain its updates come from inside the
        # compiled loop (the harness's clock); otherwise it loops in Python: off
        progress_bar=chain_method(chains) == "parallel",
    )
    mcmc.run(
        jax.random.PRNGKey(seed),
        Xs.astype(dtype),
        ys.astype(dtype),
        hidden=case.hidden,
        prior=case.prior,
        extra_fields=("num_steps", "diverging"),
    )
    samples = jax.device_get(mcmc.get_samples(group_by_chain=True))
    extra = jax.device_get(mcmc.get_extra_fields(group_by_chain=True))
    total = time.perf_counter() - t0
    warm_s, samp_s = ProgressRecorder.split(settings["tune"])
    return {
        "total": total,
        "params": {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()},
        "n_steps": np.asarray(extra["num_steps"]),
        "diverging": int(extra["diverging"].sum()),
        "warm_s": warm_s,
        "samp_s": samp_s,
        "precision": "float64" if x64 else "float32",
    }


def _fit_pymc(case, contender, problem, y, settings, seed) -> dict:
    """``pm.sample(nuts_sampler="pymc")`` on the catalogue's model: PyMC's own NUTS."""
    import pymc as pm

    t0 = time.perf_counter()
    net = catalogue_net(case)
    X_arr, y_arr, spec = net.data_spec(problem.X, y)
    model = net.build_validated(X_arr, y_arr, spec)
    idata = pm.sample(
        settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        random_seed=seed,
        model=model,
        nuts_sampler="pymc",
        var_names=[v.name for v in model.free_RVs],
        progressbar=False,
        compute_convergence_checks=False,
        discard_tuned_samples=False,
    )
    total = time.perf_counter() - t0
    warm_s, samp_s = split_from_pymc_stats(idata)
    return _idata_draws(idata) | {
        "total": total,
        "warm_s": warm_s,
        "samp_s": samp_s,
        "precision": "float64",
    }


def _idata_draws(idata) -> dict:
    """Return the parameter draws, leapfrog steps and divergences of a PyMC fit."""
    post, stats = idata["posterior"], idata["sample_stats"]
    return {
        "params": {k: post[k].values for k in post.data_vars},
        "n_steps": stats["n_steps"].values,
        "diverging": int(stats["diverging"].sum()),
    }


def gradient_overhead(case: NutsCase, contender: str, problem: Problem, row: dict) -> dict:
    """Cost per gradient of the contender's sampling against the raw loop of its log density."""
    from contextlib import nullcontext

    if contender in CATALOGUE:
        from bnncat.models.jax_runtime import jax_precision

        impl, precision = "bnncat", jax_precision(row["precision"])
    else:  # the hand-written model: numpyro's precision flag is still set as in its fit
        impl, precision = "numpyro", nullcontext()
    net = catalogue_net(case, contender) if contender in CATALOGUE else None
    with precision:
        logp, x0 = log_density(impl, problem.X, problem.y, case.hidden, case.prior, net)
        raw = raw_gradient_cost(logp, x0, row["n_obs"], case.hidden, row["chains"])
    sampled = 1e6 * row["sampling_s"] / row["grad_evals"]
    return {"us_per_grad": sampled, "raw_us_per_grad": raw, "gradient_overhead": sampled / raw}


# --------------------------------------------------------------------------- ADVI


ADVI_CASES = {
    # name: (data, hidden, prior, iterations)
    "ii": ("mcycle", (16,), "lecun", 30_000),
    "iii": ("synthetic", (32, 32), "lecun", 5_000),
}
ADVI_QUICK = 1000


def run_advi(case_name: str, contender: str, iterations: int, seed: int) -> dict:
    """Time one ADVI fit (the catalogue, defaults) or NumPyro SVI run of ``iterations``.

    Time per iteration is the wall time of the optimisation loop divided by the
    iterations: for the catalogue as ``fit`` records it (``fit_history.attrs``,
    compilation excluded, its first chunk's one-off costs included), for SVI the
    wall time of the second run of the loop ``svi.run`` runs (a ``lax.scan`` of
    ``svi.update``, compiled first; ``us_first_run`` is its first run). ``setup_s``
    is the rest of the total (MAP start, compilation, 1000 draws from the
    approximation, building the result).
    """
    t_import = time.perf_counter()
    import jax

    import bnncat  # noqa: F401

    if contender == "bnncat":
        import pymc  # noqa: F401
    import_s = time.perf_counter() - t_import
    data_name, hidden, prior, _ = ADVI_CASES[case_name]
    case = NutsCase(case_name, "", data_name, hidden, prior=prior, n=2000)
    problem = load_problem(case)
    y = np.asarray(problem.y, dtype=np.float64)
    t0 = time.perf_counter()
    if contender == "bnncat":
        net = catalogue_net(case)
        idata = net.fit(
            problem.X,
            y,
            method="advi",
            advi_iterations=iterations,
            random_seed=seed,
            progressbar=False,
        )
        total = time.perf_counter() - t0
        loop = idata["fit_history"].attrs["loop_seconds"]
        loss = float(idata["fit_history"]["loss"].values[-100:].mean())
        import json

        precision = json.loads(idata.attrs["bnncat_fit"])["precision"]
        first_loop, first_run = loop, {}
    elif contender == "numpyro-svi":
        loop, first_loop, loss = _fit_svi(problem, y, hidden, prior, iterations, seed)
        total = time.perf_counter() - t0 - loop  # the second run is the harness's, not svi.run's
        precision = "float32"
        first_run = {"us_first_run": first_loop / iterations * 1e6}
    else:
        raise ValueError(f"unknown ADVI contender {contender!r}")
    return {
        "case": case_name,
        "contender": contender,
        "seed": seed,
        "iterations": iterations,
        "precision": precision,
        "us_per_iteration": loop / iterations * 1e6,
        **first_run,
        "setup_s": total - first_loop,
        "total_s": total,
        "import_s": import_s,
        "final_loss": loss,
        "peak_rss_mb": peak_rss_mb(),
        "device": jax.default_backend(),
    }


def _fit_svi(problem: Problem, y, hidden, prior: str, iterations: int, seed: int):
    """NumPyro SVI (AutoNormal, Adam) on a case: its loop's time, its first run's, the loss.

    The loop is the one ``svi.run`` runs without a progress bar (a ``lax.scan`` of
    ``svi.update``), compiled first and timed on its second run: ``svi.run``'s wall
    time less the compile clock was compilation's noise (~90% of it at 30,000
    steps), and a program's first run pays one-off costs (``fit``'s figure keeps its
    own). Then 1000 draws from the fitted approximation, as ``fit`` makes.
    """
    import jax
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    Xs, ys = standardise(np.asarray(problem.X, dtype=np.float64), y)
    guide = AutoNormal(numpyro_mlp)
    svi = SVI(numpyro_mlp, guide, numpyro.optim.Adam(0.01), Trace_ELBO())
    args = (Xs.astype(np.float32), ys.astype(np.float32))
    kwargs = {"hidden": hidden, "prior": prior}
    # svi.run would initialise too (tracing the model eagerly): do it first, as set-up
    state = jax.block_until_ready(svi.init(jax.random.PRNGKey(seed), *args, **kwargs))

    def loop(state, X, y):
        return jax.lax.scan(
            lambda s, _: svi.update(s, X, y, **kwargs), state, None, length=iterations
        )

    run = jax.jit(loop).lower(state, *args).compile()
    times = []
    for _ in range(2):
        t1 = time.perf_counter()
        end, losses = run(state, *args)
        params = jax.block_until_ready(svi.get_params(end))
        times.append(time.perf_counter() - t1)
    draws = guide.sample_posterior(jax.random.PRNGKey(seed + 1), params, sample_shape=(1000,))
    jax.block_until_ready(draws)
    # the ELBO in standardised units differs from the catalogue's by a constant
    return times[1], times[0], float(np.mean(np.asarray(losses)[-100:]))


# --------------------------------------------------------------------------- realistic data


@dataclass(frozen=True)
class RealisticCase:
    """A UCI data set at its real size, a network, and the NUTS run it can afford."""

    name: str
    title: str
    data: str
    hidden: tuple[int, ...]
    nuts: dict = field(default_factory=lambda: {"chains": 4, "tune": 200, "draws": 200})


REALISTIC_CASES = {
    c.name: c
    for c in (
        RealisticCase("energy", "1x50 tanh on energy (768 rows)", "energy", (50,)),
        RealisticCase(
            "power",
            "1x50 tanh on power-plant (9568 rows)",
            "power-plant",
            (50,),
            nuts={"chains": 4, "tune": 100, "draws": 100},
        ),
        RealisticCase(
            "naval",
            "2x50 tanh on naval (11,934 rows)",
            "naval-propulsion-plant",
            (50, 50),
            nuts={"chains": 4, "tune": 100, "draws": 100},
        ),
    )
}
#: The methods of a realistic case: ``fit`` options (NUTS's come from the case).
REALISTIC_METHODS = {
    "nuts": {"method": "nuts"},
    "advi": {"method": "advi"},
    "advi, minibatch 500": {"method": "advi", "batch_size": 500},
    "ensemble": {"method": "ensemble", "members": 10},
    "multiswag": {"method": "swag", "members": 10},
    "dei-nuts": {"method": "dei", "members": 10, "draws": 100, "tune": 100},
    "mclmc": {"method": "mclmc", "members": 10},
    "sg-mcmc": {"method": "sgmcmc"},
}
REALISTIC_QUICK = {
    "nuts": {"chains": 2, "tune": 50, "draws": 50},
    "advi": {"advi_iterations": 2000},
    "advi, minibatch 500": {"advi_iterations": 2000},
    "ensemble": {"members": 2},
    "multiswag": {"members": 2},
    "dei-nuts": {"members": 2, "draws": 20, "tune": 50},
    "mclmc": {"members": 2},
    "sg-mcmc": {"draws": 100, "chains": 2},
}


def run_realistic(case_name: str, method: str, seed: int, quick: bool) -> dict:
    """Fit one method on the first protocol split of a UCI data set and measure it.

    Wall time of ``fit`` (compilation included, imports not); the smallest bulk
    ESS of the network output at 50 held-out rows, per second of it (for the
    methods whose draws form chains of more than one draw); held-out LPD per row.
    """
    import warnings

    import bnncat  # noqa: F401
    from bnncat.data import load, uci_splits
    from bnncat.evaluation.density import log_predictive_density
    from bnncat.models import MLP, read_net

    case = REALISTIC_CASES[case_name]
    ds = load(case.data)
    X, y = np.asarray(ds.X, dtype=np.float64), np.asarray(ds.y, dtype=np.float64)
    train, test = uci_splits(case.data, n_splits=1, seed=seed)[0]
    options = dict(REALISTIC_METHODS[method])
    if method == "nuts":
        options |= case.nuts
    if quick:
        options |= REALISTIC_QUICK[method]
    net = MLP(hidden=case.hidden, activation="tanh")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fit's convergence advice; the table reports it
        idata = net.fit(X[train], y[train], random_seed=seed, progressbar=False, **options)
    total = time.perf_counter() - t0
    lpd = log_predictive_density(idata, X[test], y[test])
    post = idata["posterior"]
    row: dict[str, Any] = {
        "case": case_name,
        "method": method,
        "seed": seed,
        "n_train": len(train),
        "hidden": "x".join(map(str, case.hidden)),
        "chains": post.sizes["chain"],
        "draws": post.sizes["draw"],
        "total_s": total,
        "lpd_per_row": float(lpd["mean"]),
        "peak_rss_mb": peak_rss_mb(),
    }
    if post.sizes["draw"] > 1:
        fitted, spec = read_net(idata)
        params = {k: post[k].values for k in post.data_vars}
        probes = np.asarray(X[test][:PROBES])
        row |= _probe_metrics(fitted, spec, params, probes)
        row["ess_per_s"] = row["min_ess_bulk"] / total
    return row


# --------------------------------------------------------------------------- scaling


def log_density(impl: str, X, y, hidden: tuple[int, ...], prior: str = "lecun", net=None):
    """Return the log density a contender's sampler differentiates, and a start point.

    ``impl="bnncat"``: the catalogue model's (``net``, an ``MLP`` by default) as
    PyMC hands it to numpyro (``get_jaxified_logp``); ``impl="numpyro"``: the
    hand-written model's potential. Built under the precision in force (its
    constants, the data, take it).
    """
    import jax
    import jax.numpy as jnp

    y = np.asarray(y, dtype=np.float64)
    if impl == "bnncat":
        from pymc.sampling.jax import get_jaxified_logp

        from bnncat.models import MLP

        net = net or MLP(hidden=hidden, activation="tanh", prior=prior)
        model = net.build_validated(*net.data_spec(X, y))
        ip = model.initial_point(random_seed=0)
        logp = get_jaxified_logp(model, negative_logp=False)
        return logp, [jnp.asarray(ip[v.name]) + 0.05 for v in model.value_vars]
    from numpyro.infer.util import initialize_model

    dtype = jax.dtypes.canonicalize_dtype(np.float64)  # float32 unless x64 is on
    Xs, ys = standardise(np.asarray(X, dtype=np.float64), y)
    info, potential, _, _ = initialize_model(
        jax.random.PRNGKey(0),
        numpyro_mlp,
        model_args=(Xs.astype(dtype), ys.astype(dtype)),
        model_kwargs={"hidden": hidden, "prior": prior},
    )
    return (lambda x: -potential(x)), info.z


def raw_gradient_cost(logp, x0, n_obs: int, hidden: tuple[int, ...], chains: int = 1) -> float:
    """Microseconds of wall time per gradient of ``logp``: the physical limit of a sampler.

    ``value_and_grad`` in a compiled loop with a data dependence between
    iterations (XLA cannot hoist it), best of 3. With several chains the loops
    run as numpyro runs the chains (``chain_method``: one per device, vectorised
    or one after another), and the time is per gradient of one chain, as a
    sampler's wall time over its gradients of all chains is.
    """
    import jax

    work = n_obs * sum(a * b for a, b in zip((3, *hidden), (*hidden, 1), strict=True))
    n_loop = int(np.clip(3e7 / work, 20, 20000))

    def body(i, x):
        _, g = jax.value_and_grad(logp)(x)
        return jax.tree.map(lambda a, b: a + 1e-9 * b, x, g)

    def loop(x):
        return jax.lax.fori_loop(0, n_loop, body, x)

    if chains == 1:
        run, start = jax.jit(loop), x0
    else:
        method = chain_method(chains)
        start = jax.tree.map(lambda a: np.broadcast_to(a, (chains, *np.shape(a))), x0)
        if method == "parallel":
            run = jax.pmap(loop)
        elif method == "vectorized":
            run = jax.jit(jax.vmap(loop))
        else:
            run = jax.jit(lambda xs: jax.lax.map(loop, xs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float64 constants requested under float32
        jax.block_until_ready(run(start))
        times = []
        for _ in range(3):
            t = time.perf_counter()
            jax.block_until_ready(run(start))
            times.append(time.perf_counter() - t)
    return float(np.min(times)) / (n_loop * chains) * 1e6


def _grad_cost(n_obs: int, hidden: tuple[int, ...], precision: str, impl: str) -> float:
    """Microseconds per gradient of the log density of synthetic data, one chain."""
    import jax

    problem = synthetic_data(n_obs)
    with jax.enable_x64(precision == "float64"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float64 constants requested under float32
        logp, x0 = log_density(impl, problem.X, problem.y, hidden)
        return raw_gradient_cost(logp, x0, n_obs, hidden)


def run_grad_scaling(impl: str, precision: str, points: list) -> dict:
    """Cost of one gradient of the log density (what every leapfrog step evaluates).

    ``impl="bnncat"``: the catalogue model's log density as PyMC hands it to
    numpyro (``get_jaxified_logp``); ``impl="numpyro"``: the hand-written
    model's potential. Each point runs ``value_and_grad`` in a compiled loop
    with a data dependence between iterations (XLA cannot hoist it); best of 3.
    """
    import jax

    import bnncat  # noqa: F401

    if impl == "bnncat":
        import pymc.sampling.jax  # noqa: F401  (its import turns x64 on, as in fit)
    rows = []
    for n_obs, hidden in points:
        hidden = tuple(hidden)
        rows.append(
            {
                "n_obs": n_obs,
                "hidden": "x".join(map(str, hidden)),
                "width": hidden[0],
                "precision": precision,
                "impl": impl,
                "us_per_grad": _grad_cost(n_obs, hidden, precision, impl),
                "device": jax.default_backend(),
            }
        )
    return {"rows": rows}


def run_advi_scaling(n_obs: int, batch_size: int | None, iterations: int) -> dict:
    """Time per iteration of catalogue ADVI (1x16 tanh) on N rows, full data or minibatch.

    One fit with the defaults (the JAX engine; float32, float64 with minibatches)
    except ``advi_init="pymc"`` (the MAP search is not what is measured) and 10
    draws; the time per iteration is the loop's wall time as ``fit`` records it.
    """
    import json

    import bnncat  # noqa: F401
    from bnncat.models import MLP

    problem = synthetic_data(n_obs)
    net = MLP(hidden=(16,), activation="tanh")
    t0 = time.perf_counter()
    idata = net.fit(
        problem.X,
        problem.y,
        method="advi",
        advi_iterations=iterations,
        batch_size=batch_size,
        advi_init="pymc",
        draws=10,
        random_seed=1,
        progressbar=False,
    )
    return {
        "n_obs": n_obs,
        "batch_size": batch_size or 0,
        "precision": json.loads(idata.attrs["bnncat_fit"])["precision"],
        "us_per_iteration": idata["fit_history"].attrs["loop_seconds"] / iterations * 1e6,
        "total_s": time.perf_counter() - t0,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(spec: dict) -> dict:
    """Dispatch a child job described by ``spec`` (a dict decoded from JSON)."""
    kind = spec.pop("kind")
    if kind == "nuts":
        return run_nuts(**spec)
    if kind == "advi":
        return run_advi(**spec)
    if kind == "grad":
        return run_grad_scaling(**spec)
    if kind == "advi_scaling":
        return run_advi_scaling(**spec)
    if kind == "realistic":
        return run_realistic(**spec)
    raise ValueError(kind)


if __name__ == "__main__":  # pragma: no cover - used by performance.py
    import json

    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.pop("CI", None)  # numpyro switches its progress reports off under CI
    print(json.dumps(main(json.loads(sys.argv[1]))))
