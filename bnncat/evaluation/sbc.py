"""Simulation-based calibration (Talts et al. 2018; Modrák et al. 2023) of any model and method.

Parameters are drawn from the prior, data from the likelihood at fixed inputs, and the
model is fitted to each simulated data set. If the method's posterior is right, the
rank of the true value of any function of the parameters among its posterior draws is
uniform. The functions ranked here are ones the symmetries of a network cannot
scramble: the log-likelihood of the simulated data, the network's symmetry-invariant
predictions at a few probe inputs, the likelihood's own parameters and the weights,
both relabelled (``canonicalize``, method ``sort``) in truth and in every draw.

Uniformity is judged by ArviZ: the ECDF of each quantity's PIT values against a
simultaneous band of :func:`arviz_stats.ecdf_utils.ecdf_pit` (Säilynoja et al. 2022),
99% jointly over all of a model's quantities (Bonferroni: a model has 11 to 26 of them,
and at 99% each a calibrated method would leave some band one time in ten or more), and
:func:`plot_sbc` draws the ECDFs (``arviz_plots.plot_ecdf_pit``).

The model must not depend on the data it is fitted to, so the net is refitted with
``standardize=False`` (no scaling learned from each simulated data set).
"""

import dataclasses
from typing import Any

import arviz_stats  # noqa: F401  (the .azstats accessor)
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bnncat.identifiability.relabel import canonicalize
from bnncat.models.attrs import write_attrs
from bnncat.models.inference.executors import fit_each
from bnncat.models.mlp import weight_names
from bnncat.models.prediction import invariant_predictions
from bnncat.models.validation import check_positive_int, check_X

#: Simultaneous coverage of the band each quantity's PIT-ECDF must stay inside.
BAND_PROB = 0.99


@dataclasses.dataclass(frozen=True)
class SBCResult:
    """PIT values per simulation and quantity, and the verdict per quantity."""

    #: One variable per test quantity, dims (chain=1, draw=simulation): ArviZ's layout.
    pit: xr.Dataset
    #: Per quantity: pass or fail at the simultaneous band, and the shape of a failure.
    table: pd.DataFrame
    method: str
    #: Posterior draws each rank is taken among.
    ranked_draws: int

    def as_datatree(self) -> xr.DataTree:
        """Return the PIT values as a DataTree group ``prior_sbc``, as ArviZ's plots expect."""
        return xr.DataTree.from_dict({"prior_sbc": self.pit})


def sbc_net(net: Any) -> Any:
    """Return the net with ``standardize=False``: its prior is then the same for every data set."""
    if net.likelihood == "categorical" and net.n_classes is None:
        raise ValueError(
            "SBC of a categorical net needs n_classes: simulated data sets may miss a class"
        )
    return dataclasses.replace(net, standardize=False)


def simulate_prior(net: Any, X: np.ndarray, n: int, random_seed: int) -> xr.DataTree:
    """Draw ``n`` parameter sets from the prior and a data set at ``X`` from each.

    Returns a DataTree laid out as a fit (``posterior`` with chain=1, draw=n, and
    ``constant_data``) holding the canonical (relabelled) parameters, and
    ``prior_predictive`` with the simulated ``y``. Forward sampling ignores PyMC's
    transforms, so the draws of a constrained net (``OrderedMLP``, an ordered mixture)
    are those of its unconstrained twin, made canonical here: with a prior invariant
    under the symmetries this is the constrained prior.
    """
    template = _template_y(net, len(X))
    model = net.build(X, template)
    with model:
        prior = pm.sample_prior_predictive(n, random_seed=random_seed, var_names=_free(model))
    draws = prior["prior"].to_dataset()
    draws = draws[[v for v in draws.data_vars if "obs" not in draws[v].dims]]
    tree = xr.DataTree.from_dict(
        {
            "posterior": draws,
            "constant_data": xr.Dataset({"X": (("obs", "feature"), X)}),
            "prior_predictive": prior["prior_predictive"].to_dataset(),
        }
    )
    spec = net.data_spec(X, template)[2]  # unstandardised: the same for every y
    write_attrs(tree, net, spec, {"method": "prior", "kind": "prior", "random_seed": random_seed})
    return canonicalize(tree, method="sort", net=net)


def _template_y(net: Any, n: int) -> np.ndarray:
    """Targets only to build the model with: their values do not matter unstandardised."""
    if net.likelihood == "bernoulli":
        return np.arange(n) % 2
    if net.likelihood == "categorical":
        return np.arange(n) % net.n_classes
    return np.zeros(n)


def _free(model: pm.Model) -> list[str]:
    """Free variables, the deterministics that stand for parameters (a mixture's), and y."""
    return [v.name for v in model.free_RVs + model.deterministics] + ["y"]


def test_quantities(
    net: Any, spec: Any, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, X_probe
) -> dict[str, np.ndarray]:
    """Each test quantity per draw of ``params`` (draw, ...) of canonical parameters.

    The log-likelihood of ``(X, y)``, the invariant predictions at ``X_probe``, then
    every coordinate of the likelihood's parameters and of the relabelled weights.
    """
    n_draws = next(iter(params.values())).shape[0]
    logp = net.lik.logp(net.observation_parameters(params, X, spec), y[None])
    out = {"log_lik": logp.reshape(n_draws, -1).sum(axis=1)}
    f = invariant_predictions(net, params, X_probe, spec)
    for i in range(f.shape[1]):
        for j in range(f.shape[2]):
            out[f"f(x{i})[{j}]"] = f[:, i, j]
    weights = [n for pair in weight_names(net.n_hidden_layers) for n in pair]
    others = [k for k in params if k not in weights]
    for name in [*others, *weights]:
        flat = params[name].reshape(n_draws, -1)
        if flat.shape[1] == 1:
            out[name] = flat[:, 0]
            continue
        for idx in np.ndindex(params[name].shape[1:]):
            out[f"{name}[{','.join(map(str, idx))}]"] = params[name][(slice(None), *idx)]
    return out


def run_sbc(
    net: Any,
    X: object,
    *,
    method: str = "nuts",
    simulations: int = 50,
    X_probe: object = None,
    max_draws: int = 100,
    random_seed: int = 0,
    executor: str = "local",
    workers: int | None = None,
    **options: Any,
) -> SBCResult:
    """Simulation-based calibration of ``method`` on ``net`` at the inputs ``X``.

    Parameters
    ----------
    net : MLP, OrderedMLP or MixtureRegressor
        The model (refitted with ``standardize=False``: see the module docstring).
    X : array-like (n, n_features)
        Inputs of every simulated data set.
    method : str
        Any registered inference method; ``**options`` are its options.
    simulations : int
        Number of simulated data sets (and fits).
    X_probe : array-like (m, n_features), optional
        Inputs where the network's predictions are ranked (default: X's smallest,
        median and largest row of its first feature).
    max_draws : int
        Ranks are taken among at most this many posterior draws, evenly thinned
        (autocorrelated draws would make the ranks too extreme).
    random_seed : int
        Seed of the simulations, the fits and the PIT's tie-breaking.
    executor, workers
        How the fits run: ``"local"``, ``"processes"`` or ``"ray"`` (:func:`fit_each`).

    Returns
    -------
    SBCResult

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.evaluation.sbc import run_sbc
    >>> from bnncat.models import MLP
    >>> X = np.linspace(-2, 2, 20)[:, None]
    >>> result = run_sbc(MLP((2,)), X, simulations=50, draws=200, chains=2)  # doctest: +SKIP
    >>> result.table  # doctest: +SKIP
    """
    net = sbc_net(net)
    X = check_X(X, "X")
    simulations = check_positive_int(simulations, "simulations", minimum=2)
    max_draws = check_positive_int(max_draws, "max_draws")
    X_probe = _probe(X) if X_probe is None else check_X(X_probe, "X_probe", n_features=X.shape[1])
    truth = simulate_prior(net, X, simulations, random_seed)
    ys = truth["prior_predictive"]["y"].values[0]
    seeds = np.random.SeedSequence([random_seed, 1]).generate_state(simulations).tolist()
    fits = fit_each(
        net,
        [(X, y) for y in ys],
        method=method,
        executor=executor,
        workers=workers,
        random_seed=seeds,
        **options,
    )
    return sbc_result(net, X, X_probe, truth, fits, method, max_draws, random_seed)


def _probe(X: np.ndarray) -> np.ndarray:
    """Rows of X at the smallest, median and largest value of its first feature."""
    order = np.argsort(X[:, 0], kind="stable")
    return X[order[[0, len(order) // 2, -1]]]


def sbc_result(net, X, X_probe, truth, fits, method, max_draws, random_seed) -> SBCResult:
    """Ranks of the truth among each fit's (relabelled, thinned) draws; the verdicts."""
    spec = net.data_spec(X, truth["prior_predictive"]["y"].values[0, 0])[2]
    post = truth["posterior"]
    rng = np.random.default_rng([random_seed, 2])
    pits: dict[str, list[float]] = {}
    ranked = max_draws
    for s, fit in enumerate(fits):
        y = truth["prior_predictive"]["y"].values[0, s]
        true = {k: post[k].values[0, s : s + 1] for k in post.data_vars}
        canon = canonicalize(fit, method="sort", net=net)["posterior"]
        draws = {k: _thinned(canon[k].values, max_draws) for k in true}
        ranked = min(ranked, next(iter(draws.values())).shape[0])
        truth_q = test_quantities(net, spec, true, X, y, X_probe)
        draws_q = test_quantities(net, spec, draws, X, y, X_probe)
        for name, value in truth_q.items():
            pits.setdefault(name, []).append(_pit(value[0], draws_q[name], rng))
    pit = xr.Dataset({k: (("chain", "draw"), np.asarray(v)[None]) for k, v in pits.items()})
    return SBCResult(pit, verdicts(pit, random_seed), method, ranked)


def _thinned(values: np.ndarray, max_draws: int) -> np.ndarray:
    """(chain, draw, ...) -> (at most max_draws, ...), evenly spaced within the chains."""
    flat = values.reshape(-1, *values.shape[2:])
    keep = np.linspace(0, len(flat) - 1, min(max_draws, len(flat))).round().astype(int)
    return flat[keep]


def _pit(true: float, draws: np.ndarray, rng: np.random.Generator) -> float:
    """Randomised PIT of the rank: (draws below + U x ties-and-one) / (draws + 1)."""
    below = np.sum(draws < true)
    ties = np.sum(draws == true)
    return float((below + rng.uniform() * (ties + 1)) / (len(draws) + 1))


def verdicts(pit: xr.Dataset, random_seed: int = 0, prob: float = BAND_PROB) -> pd.DataFrame:
    """Per quantity: inside the bands or not, ArviZ's p-value, and what a failure looks like.

    ``pass`` is the verdict for a model's family of Q quantities: inside the band of
    probability ``1 - (1 - prob) / Q`` (Bonferroni), so that a calibrated method keeps all
    Q inside with probability at least ``prob``. ``inside_own_band`` is the band of
    probability ``prob`` for each quantity alone, which a calibrated method leaves on some
    quantity with probability up to ``Q (1 - prob)`` (``benchmarks/sbc_null.py``).
    """
    # ArviZ's own test (pot_c, the default of plot_ecdf_pit), beside the bands
    p_values = pit.azstats.uniformity_test(dim=["chain", "draw"], method="pot_c")[0]
    family_prob = family_band_prob(len(pit.data_vars), prob)
    rows = []
    for name in pit.data_vars:
        u = pit[name].values.ravel()
        rows.append(
            {
                "quantity": name,
                "pass": _inside_band(u, family_prob, random_seed),
                "inside_own_band": _inside_band(u, prob, random_seed),
                "p_pot_c": float(p_values[name]),
                **failure_shape(u),
            }
        )
    return pd.DataFrame(rows)


def family_band_prob(n_quantities: int, prob: float = BAND_PROB) -> float:
    """Return the band probability per quantity that holds ``n_quantities`` at ``prob`` jointly."""
    return 1 - (1 - prob) / n_quantities


def _inside_band(u: np.ndarray, prob: float, random_seed: int) -> bool:
    """Whether the ECDF of ``u`` stays inside ArviZ's simultaneous band of probability ``prob``."""
    from arviz_stats.ecdf_utils import ecdf_pit

    rng = np.random.default_rng([random_seed, 3])
    # ArviZ estimates the band from simulated uniform samples: at 1000 (its default) the
    # edge of a joint band (1 - 0.01/Q) rests on one or two of them and moves with the seed
    n_simulations = max(1000, int(np.ceil(10 / (1 - prob))))
    _, ecdf, lower, upper = ecdf_pit(u, prob, n_simulations=n_simulations, rng=rng)
    return bool(((ecdf >= lower) & (ecdf <= upper)).all())


def failure_shape(u: np.ndarray) -> dict[str, Any]:
    """Mean PIT (0.5 if unbiased) and share in the outer fifth (0.2), and what they say.

    A PIT near 1 means the truth lies above most draws: the posterior is too low.
    Too many PITs in the tails: the posterior is too narrow; too few: too wide.
    """
    n = len(u)
    mean, outer = float(u.mean()), float(np.mean(np.abs(u - 0.5) > 0.4))
    words = []
    if abs(mean - 0.5) > 3 * np.sqrt(1 / 12 / n):
        words.append("too low" if mean > 0.5 else "too high")
    if abs(outer - 0.2) > 3 * np.sqrt(0.2 * 0.8 / n):
        words.append("too narrow" if outer > 0.2 else "too wide")
    shape = ", ".join(words) or "no overall shift or spread"
    return {"mean_pit": mean, "outer_share": outer, "shape": shape}


def plot_sbc(result: SBCResult, *, var_names: list[str] | None = None) -> Any:
    """Draw each quantity's PIT-ECDF minus the uniform CDF (``arviz_plots.plot_ecdf_pit``).

    The envelope is the table's verdict band: 99% jointly over all of the result's
    quantities (:func:`family_band_prob`), whichever of them are drawn.
    """
    from arviz_plots import plot_ecdf_pit

    prob = family_band_prob(len(result.pit.data_vars))
    return plot_ecdf_pit(result.as_datatree(), var_names=var_names, envelope_prob=prob)
