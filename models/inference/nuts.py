"""NUTS on numpyro (one program per model, see numpyro_program), blackjax, nutpie or PyMC's own."""

import importlib.util
import sys
from contextlib import nullcontext
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bnncat.models.inference.convergence_check import prediction_convergence, warn_if_unconverged
from bnncat.models.inference.numpyro_program import sample_numpyro_program
from bnncat.models.inference.problem import (
    Problem,
    as_numpy_float64,
    check_precision,
    prepare_problem,
    record_fit,
)
from bnncat.models.inference.progress import heartbeat, writes_to_log
from bnncat.models.inference.registry import register
from bnncat.models.integrated_output import MARGINAL, draw_output_layer
from bnncat.models.jax_runtime import jax_session, on_accelerator
from bnncat.models.pymc_internals import jitted_start_checks
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int

NUTS_SAMPLERS = ("numpyro", "nutpie", "pymc", "blackjax")
#: Chosen by ``benchmarks/nuts_backends.py`` (README, "Choice of NUTS backend"):
#: the most effective samples of the predictions per second on 2 cores.
DEFAULT_NUTS_SAMPLER = "numpyro"
_SAMPLER_PACKAGES = {"numpyro": "numpyro", "nutpie": "nutpie", "blackjax": "blackjax"}
_JAX_SAMPLERS = ("numpyro", "blackjax")


def numpyro_chain_method(chains: int) -> str:
    """How numpyro should run ``chains`` chains on this machine.

    One chain per XLA device when there are enough devices (``bnncat`` asks
    JAX for several CPU host devices at import, see ``bnncat/__init__.py``);
    on a single accelerator the chains are vectorised; otherwise they run one
    after another, which on CPU beats vectorising them (the benchmark in
    ``benchmarks/nuts_backends.py``).
    """
    import jax

    if jax.local_device_count() >= chains:
        return "parallel"
    return "vectorized" if on_accelerator() else "sequential"


def _check_sampler(nuts_sampler: object) -> str:
    nuts_sampler = check_choice(nuts_sampler, NUTS_SAMPLERS, "nuts_sampler")
    package = _SAMPLER_PACKAGES.get(nuts_sampler)
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"nuts_sampler={nuts_sampler!r} needs the {package!r} package, which is not "
            f"installed (pip install {package})"
        )
    if nuts_sampler == "blackjax" and _blackjax_nuts_broken():
        raise ValueError(
            "nuts_sampler='blackjax' does not run with PyMC < 6.5 and BlackJAX >= 1.7: PyMC "
            "hands BlackJAX's window adaptation a progress_bar option it no longer takes; "
            "use nuts_sampler='numpyro' (the default), or method='chees' for BlackJAX's HMC"
        )
    return nuts_sampler


def _blackjax_nuts_broken() -> bool:
    """Tell whether the installed PyMC and BlackJAX are the pair whose NUTS fails."""
    from importlib.metadata import version

    def major_minor(package: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version(package).split(".")[:2])

    return major_minor("pymc") < (6, 5) and major_minor("blackjax") >= (1, 7)


@register(
    "nuts",
    kind="mcmc",
    refuses={"batch_size": "NUTS needs the full data; minibatches are for ADVI"},
)
def fit_nuts(
    net: Any,
    X: object,
    y: object,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    nuts_sampler: str = DEFAULT_NUTS_SAMPLER,
    target_accept: float = 0.8,
    precision: str = "auto",
    temperature: float = 1.0,
    store_mu: bool = False,
    progressbar: bool = True,
) -> xr.DataTree:
    """Sample the posterior of ``net`` on ``(X, y)`` by NUTS.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X, y : array-like
        Inputs (n, n_features) and targets, as for :func:`bnncat.models.fit`.
    draws, tune, chains : int
        Draws and warm-up iterations per chain, and the number of chains.
    random_seed : int, optional
        Seed of the whole fit; drawn and stored in the attrs when omitted.
    nuts_sampler : {"numpyro", "nutpie", "pymc", "blackjax"}
        NUTS implementation; the default is the fastest measured here.
    target_accept : float
        Target acceptance rate in (0, 1); raise it when there are divergences.
    precision : {"auto", "float32", "float64"}
        Precision of the JAX samplers (numpyro, blackjax); ``"auto"`` is float32
        there (NumPyro's own default) and float64 for nutpie and PyMC's sampler.
        The posterior is stored in float64 either way.
    temperature : float
        Raise the likelihood to 1 / ``temperature``: below 1 a cold posterior,
        above 1 a warm one; 1 (the default) is the Bayesian posterior itself.
    store_mu : bool
        Keep the network output ``mu`` at the training inputs for every draw.
    progressbar : bool
        Show the sampler's progress.

    Returns
    -------
    xarray.DataTree
        ``posterior``, ``sample_stats`` (NUTS statistics), ``observed_data`` and
        ``constant_data``; the attrs record the fit (kind ``mcmc``). A warning
        says when the chains disagree on the fitted function or diverged.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP
    >>> from bnncat.models.inference import fit_nuts
    >>> ds = data.load("mcycle")
    >>> idata = fit_nuts(MLP((8,)), ds.X, ds.y, draws=500, random_seed=1)  # doctest: +SKIP
    """
    nuts_sampler, tune, chains, target_accept, precision = _check_options(
        nuts_sampler, tune, chains, target_accept, precision
    )
    problem = prepare_problem(
        net,
        X,
        y,
        draws=draws,
        random_seed=random_seed,
        store_mu=store_mu,
        temperature=temperature,
        integrate_output=True,
    )
    nuts: dict[str, Any] = {"target_accept": target_accept}
    if nuts_sampler == "numpyro":
        nuts["chain_method"] = numpyro_chain_method(chains)
    in_log = progressbar and writes_to_log()
    precision = problem.usable_precision(precision)
    idata = _sample(problem, tune, chains, nuts_sampler, nuts, precision, progressbar, in_log)
    if nuts_sampler in _JAX_SAMPLERS:  # stored in NumPy float64 like every other fit
        for group in ("posterior", "sample_stats"):
            idata[group] = as_numpy_float64(idata[group].to_dataset())
    if MARGINAL in problem.model.named_vars:  # output layer integrated out: draw it now
        seed = int(np.random.SeedSequence([problem.random_seed, 1]).generate_state(1)[0])
        draw_output_layer(idata, net, problem.X, problem.y, problem.spec, seed)
    options = {
        "tune": tune,
        "chains": chains,
        "nuts_sampler": nuts_sampler,
        "target_accept": target_accept,
        "precision": precision,
        "store_mu": store_mu,
    }
    record_fit(idata, problem, "nuts", options)
    if in_log:
        log_chains(idata)
    warn_if_unconverged(prediction_convergence(idata, net, problem.spec))
    return idata


def _check_options(
    nuts_sampler: object, tune: object, chains: object, target_accept: object, precision: object
) -> tuple[str, int, int, float, str]:
    """Check NUTS's options before anything is built; resolve ``precision="auto"``."""
    nuts_sampler = _check_sampler(nuts_sampler)
    tune = check_positive_int(tune, "tune", minimum=0)
    chains = check_positive_int(chains, "chains")
    target_accept = check_positive_float(target_accept, "target_accept")
    if not target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1); got {target_accept}")
    on_jax = nuts_sampler in _JAX_SAMPLERS
    precision = check_precision(
        precision, on_jax=on_jax, engine_hint="nuts_sampler='numpyro' or 'blackjax'"
    )
    if precision == "auto":  # float32 wherever JAX computes: faster (README, "Performance")
        precision = "float32" if on_jax else "float64"
    return nuts_sampler, tune, chains, target_accept, precision


def _sample(
    problem: Problem,
    tune: int,
    chains: int,
    nuts_sampler: str,
    nuts: dict[str, Any],
    precision: str,
    progressbar: bool,
    in_log: bool,
) -> xr.DataTree:
    """Sample with PyMC; in a log, a heartbeat line instead of the sampler's bars."""
    desc = f"NUTS ({nuts_sampler}): {chains} chains x {tune + problem.draws} iterations"
    options = {
        "tune": tune,
        "chains": chains,
        "model": problem.model,
        "var_names": problem.keep,
        "progressbar": progressbar and not in_log,
        # PyMC's own checks judge raw weights, whose R-hat the symmetries of hidden
        # units inflate even when the chains agree; see warn_if_unconverged.
        "compute_convergence_checks": False,
    }
    with jax_session(precision), heartbeat(desc) if in_log else nullcontext():
        if nuts_sampler not in _JAX_SAMPLERS:
            return pm.sample(
                problem.draws,
                random_seed=problem.random_seed,
                nuts_sampler=nuts_sampler,
                nuts=nuts,
                **options,
            )
        if nuts_sampler == "numpyro":
            return sample_numpyro_program(
                problem.model,
                problem.keep,
                draws=problem.draws,
                tune=tune,
                chains=chains,
                random_seed=_chain_seed(problem.random_seed, chains),
                target_accept=nuts["target_accept"],
                chain_method=nuts["chain_method"],
                progressbar=options["progressbar"],
            )
        with jitted_start_checks():
            return _sample_on_jax(problem, nuts_sampler, nuts, options)


def _sample_on_jax(
    problem: Problem, nuts_sampler: str, nuts: dict[str, Any], options: dict[str, Any]
) -> xr.DataTree:
    """Call PyMC's JAX sampler as ``pm.sample`` does, without its step-method assignment.

    ``pm.sample`` first assigns PyMC step methods to every variable, which builds
    gradient graphs the JAX samplers never use (most of a second of a small net's
    fit). The seed is the one ``pm.sample`` hands on, so the draws are the same.
    """
    from pymc.sampling import jax as pymc_jax

    sampler = getattr(pymc_jax, f"sample_{nuts_sampler}_nuts")
    nuts = dict(nuts)
    return sampler(
        problem.draws,
        random_seed=_chain_seed(problem.random_seed, options["chains"]),
        target_accept=nuts.pop("target_accept"),
        **({"chain_method": nuts.pop("chain_method")} if "chain_method" in nuts else {}),
        nuts_kwargs=nuts,
        **options,
    )


def _chain_seed(random_seed: int, chains: int) -> int:
    """Derive the seed ``pm.sample`` hands a JAX sampler from ``random_seed``."""
    from pymc.util import get_random_generator

    return int(get_random_generator(random_seed).spawn(chains)[0].integers(2**30))


def log_chains(idata: xr.DataTree) -> None:
    """Print one line per chain: its draws, divergences and step size (for a log)."""
    stats = idata["sample_stats"]
    for c in range(stats.sizes["chain"]):
        chain = stats.isel(chain=c)
        divergent = int(chain["diverging"].sum()) if "diverging" in chain else 0
        step = float(chain["step_size"].mean()) if "step_size" in chain else float("nan")
        print(
            f"NUTS chain {c}: {chain.sizes['draw']} draws, {divergent} divergent, "
            f"step size {step:.3g}",
            file=sys.stderr,
        )
