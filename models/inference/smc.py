"""Sequential Monte Carlo through PyMC's ``pm.sample_smc``: tempering from the prior.

Each run (a chain) starts ``draws`` particles from the prior and raises the
likelihood's exponent beta from 0 to 1 in stages: at each stage beta grows as far as
the importance weights keep an effective sample size of ``threshold`` times the
particles, the particles are resampled by those weights and moved by a
Metropolis kernel (``"imh"``: independent proposals from a Gaussian fitted to the
particles; ``"mh"``: random-walk proposals) until their correlation with the
stage's start stops falling (Ching and Chen 2007, Minson et al. 2013). The product
of the stages' mean weights estimates the marginal likelihood p(y), one estimate per
run. Their spread across runs is only a lower bound on the error: runs that all miss
the same part of the posterior agree on a value that is too low.
"""

from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bnncat.models.inference.problem import Problem, as_numpy_float64, prepare_problem, record_fit
from bnncat.models.inference.registry import register
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

#: The mutation kernels of ``pm.sample_smc`` (PyMC has no gradient-based one).
KERNELS = {"imh": pm.smc.IMH, "mh": pm.smc.MH}
#: PyTensor backends of the log densities, evaluated once per particle and step, and
#: their compile modes. PyMC's default, numba, is faster per call but fails to compile
#: the flattened log prior of a Dirichlet with a length-1 dim from coords (the weights
#: of a one-output MixtureRegressor; PyTensor 3.3), so C is the default.
BACKENDS = {"c": "CVM", "numba": "NUMBA"}
#: Each kernel's per-stage statistics, by PyMC's name and by the ``smc`` group's.
_STAGE_STATS = {
    "imh": {"accept_rate": "accept_rate"},
    "mh": {"mean_accept_rate": "accept_rate", "mean_proposal_scale": "proposal_scale"},
}
_REFUSES = {
    "tune": "SMC has no warm-up: its tempering stages adapt the kernel",
    "nuts_sampler": "SMC moves its particles by Metropolis kernels: set kernel",
}


@register("smc", kind="smc", refuses=_REFUSES)
def fit_smc(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    kernel: str = "imh",
    threshold: float = 0.5,
    correlation_threshold: float = 0.01,
    cores: int = 1,
    backend: str = "c",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Sample the posterior of ``net`` on ``(X, y)`` by sequential Monte Carlo.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws : int
        Particles per run; the final particles are the run's draws.
    chains : int
        Independent SMC runs, each with its own particles and its own estimate of
        the marginal likelihood.
    random_seed : int, optional
        Seed of the whole fit; drawn and stored in the attrs when omitted.
    kernel : {"imh", "mh"}
        How particles move within a stage: ``"imh"`` (PyMC's default) proposes
        from a Gaussian fitted to all particles, ``"mh"`` takes random-walk steps.
    threshold : float
        In (0, 1): the effective sample size each stage keeps, as a share of
        ``draws``; higher means smaller steps in beta and more stages.
    correlation_threshold : float
        In (0, 1): a stage keeps mutating while the particles' correlation with
        its start falls by more than this; lower means more Metropolis steps.
    cores : int
        Runs at once in PyMC's worker processes; 1 runs them one after another in
        this process. The draws are the same either way.
    backend : {"c", "numba"}
        PyTensor backend of the log densities: C compiles for every net (once
        per machine, then cached); numba is faster per particle but fails to
        compile a one-output ``MixtureRegressor``. The draws are the same either way.
    temperature : float
        Raise the likelihood to 1 / ``temperature`` (1: the Bayesian posterior);
        the tempering then anneals that likelihood.
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Show PyMC's progress of the stages.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain = run, draw = particle), ``sample_stats`` (``log_p``,
        the log posterior density of each particle), ``smc`` (each run's
        ``log_marginal_likelihood``, its ``stages`` and, on a ``stage`` dim padded
        with NaN, its ``beta`` schedule and acceptance rates), ``observed_data``
        and ``constant_data``; the attrs record the fit (kind ``smc``).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_smc
    >>> ds = data.load("sine", n=60)
    >>> idata = fit_smc(MLP((4,)), ds.X, ds.y, draws=2000, random_seed=1)  # doctest: +SKIP
    >>> idata["smc"]["log_marginal_likelihood"].values  # doctest: +SKIP
    """
    options = _check_options(kernel, chains, cores, threshold, correlation_threshold)
    options["backend"] = check_choice(backend, BACKENDS, "backend")
    for value, name in ((store_mu, "store_mu"), (progressbar, "progressbar")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False; got {value!r}")
    # resampling and the kernel's proposal need a population; one particle is none
    check_positive_int(draws, "draws", minimum=2)
    problem = prepare_problem(
        net, X, y, draws=draws, random_seed=random_seed, store_mu=store_mu, temperature=temperature
    )
    raw = _sample(problem, options, progressbar)
    idata = _as_tree(raw, problem, options)
    return record_fit(idata, problem, "smc", options | {"store_mu": store_mu})


def _check_options(
    kernel: object, chains: object, cores: object, threshold: object, correlation_threshold: object
) -> dict[str, Any]:
    """Validate SMC's own options before any work; return them as recorded."""
    return {
        "chains": check_positive_int(chains, "chains"),
        "kernel": check_choice(kernel, KERNELS, "kernel"),
        "threshold": _check_share(threshold, "threshold"),
        "correlation_threshold": _check_share(correlation_threshold, "correlation_threshold"),
        "cores": check_positive_int(cores, "cores"),
    }


def _check_share(value: object, argument: str) -> float:
    """Return ``value`` as a float if it lies strictly between 0 and 1."""
    value = check_positive_float(value, argument)
    if not value < 1:
        # PyMC documents both as shares; at threshold 1 the tempering would never end
        raise ValueError(f"{argument} must lie in (0, 1); got {value}")
    return value


def _sample(problem: Problem, options: dict[str, Any], progressbar: bool) -> xr.DataTree:
    """Run ``pm.sample_smc``, keeping the unconstrained values for the log densities."""
    return pm.sample_smc(
        problem.draws,
        kernel=KERNELS[options["kernel"]],
        model=problem.model,
        random_seed=problem.random_seed,
        chains=options["chains"],
        cores=min(options["cores"], options["chains"]),
        progressbar=progressbar,
        backend=options["backend"],
        # PyMC's checks judge raw weights, whose R-hat the symmetries of hidden units
        # inflate even when the runs agree (diagnose judges predictions instead)
        compute_convergence_checks=False,
        idata_kwargs={"include_transformed": True},
        threshold=options["threshold"],
        correlation_threshold=options["correlation_threshold"],
    )


def _as_tree(raw: xr.DataTree, problem: Problem, options: dict[str, Any]) -> xr.DataTree:
    """Put the draws in the catalogue's layout: kept variables in float64, log p, the stages."""
    posterior = as_numpy_float64(raw["posterior"].to_dataset())
    idata = xr.DataTree()
    idata["posterior"] = posterior[problem.keep]
    log_p = _log_p(problem.model, posterior, BACKENDS[options["backend"]])
    idata["sample_stats"] = xr.Dataset(
        {"log_p": (("chain", "draw"), log_p)},
        coords={"chain": posterior["chain"], "draw": posterior["draw"]},
    )
    stats = raw["sample_stats"].to_dataset()
    idata["smc"] = _stages(stats, options["kernel"], posterior.sizes["chain"])
    for group in ("observed_data", "constant_data"):
        idata[group] = raw[group].to_dataset()
    return idata


def _log_p(model: pm.Model, posterior: xr.Dataset, mode: str) -> np.ndarray:
    """Log posterior density of every particle, unconstrained with the Jacobians (as ADVI's)."""
    logp = model.compile_logp(jacobian=True, mode=mode)
    names = [v.name for v in model.value_vars]
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    values = {n: posterior[n].values for n in names}
    return np.array(
        [[logp({n: values[n][c, d] for n in names}) for d in range(draws)] for c in range(chains)]
    )


def _stages(stats: xr.Dataset, kernel: str, chains: int) -> xr.Dataset:
    """Each run's marginal likelihood and, per stage (padded with NaN), beta and acceptance.

    Runs take different numbers of stages; a NaN-padded ``stage`` dim keeps the
    group rectangular and writable to netCDF.
    """
    per_run = {name: _per_run(stats[name].values, chains) for name in stats.data_vars}
    stages = max(len(b) for b in per_run["beta"])

    def padded(name: str) -> np.ndarray:
        out = np.full((chains, stages), np.nan)
        for c, values in enumerate(per_run[name]):
            out[c, : len(values)] = values
        return out

    data = {
        # PyMC's estimate is complete at beta = 1, each run's last stage (NaN before)
        "log_marginal_likelihood": (
            "chain",
            [run[-1] for run in per_run["log_marginal_likelihood"]],
        ),
        "stages": ("chain", [len(b) for b in per_run["beta"]]),
        "beta": (("chain", "stage"), padded("beta")),
    }
    for pymc_name, name in _STAGE_STATS[kernel].items():
        data[name] = (("chain", "stage"), padded(pymc_name))
    return xr.Dataset(data, coords={"chain": np.arange(chains), "stage": np.arange(stages)})


def _per_run(values: np.ndarray, chains: int) -> list[np.ndarray]:
    """Split one of PyMC's SMC statistics into one float array of its stages per run.

    PyMC stores a list per run as objects (ragged across runs), but a single run's
    stages as numbers along its ``chain`` dim.
    """
    if chains == 1:
        return [np.asarray(values, dtype=np.float64).ravel()]
    return [np.asarray(run, dtype=np.float64) for run in values]
