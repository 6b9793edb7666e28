"""The Laplace evidence, and the prior and noise sds that maximise it (MacKay 1992).

At a MAP estimate x* with precision P, the evidence is approximated by
log p(y, x*) + k/2 log 2 pi - 1/2 log det P. Tuning alternates two steps, as
laplace-torch's ``marglik`` and Immer et al. (2021) do: the MAP under the current
hyperparameters, then the hyperparameters that maximise this approximation with x*
and the likelihood's curvature held. The likelihood's curvature of a normal
likelihood scales as 1 / sigma^2 and a Gaussian weight prior's as 1 / s_l^2, so the
second step is a small optimisation of a closed form in (log s_l, log sigma).
"""

from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr
from scipy import optimize

from bnncat.models.inference.flat_draws import find_map, initial_flat
from bnncat.models.inference.laplace_curvature import (
    FlatModel,
    flat_model,
    positive_semidefinite,
    precision_parts,
)
from bnncat.models.inference.problem import Problem, build_model
from bnncat.models.mlp import MLP, weight_names, weight_prior_scale

#: Largest number of (MAP, hyperparameter) rounds, and the change in log units that ends them.
MAX_ROUNDS = 12
TOLERANCE = 1e-3


def log_evidence(log_joint: float, precision: np.ndarray) -> float:
    """Laplace's log evidence from the log joint at the mode and the precision there."""
    _, logdet = np.linalg.slogdet(precision)
    return float(log_joint + len(precision) / 2 * np.log(2 * np.pi) - logdet / 2)


def check_marglik(marglik: object, net: Any) -> None:
    """Refuse ``marglik`` for a net whose prior has no per-layer Gaussian sd to tune."""
    if not isinstance(marglik, bool):
        raise TypeError(f"marglik must be True or False; got {marglik!r}")
    if not marglik:
        return
    if type(net) is not MLP:
        raise ValueError(
            f"marglik tunes the Gaussian weight priors of a plain MLP, not {type(net).__name__} "
            "(constrained weights and mixture components have no such prior)"
        )
    if net.prior == "hierarchical":
        raise ValueError("marglik chooses the layers' prior sds itself: use prior='lecun'")


def tune_by_evidence(
    problem: Problem, hessian: str, seed: int
) -> tuple[Problem, dict[str, Any], np.ndarray]:
    """Alternate MAP and evidence steps until the hyperparameters settle.

    Returns the problem of the tuned net (its ``layer_prior_scales`` and, for a
    one-output normal likelihood, ``noise_sd`` fixed), a record of the rounds and
    the chosen values, and the last MAP as a flat start.
    """
    net = problem.net
    tune_noise = net.likelihood == "normal" and problem.spec.n_outputs == 1
    fan_ins = _fan_ins(net, problem.spec.n_features)
    scales = np.array([weight_prior_scale(net, w, f) for w, f in fan_ins])
    # round 0 learns sigma with the other parameters; its MAP starts the noise sd
    flat = flat_model(problem.model, problem.temperature)
    x = find_map(flat.value_and_grad, initial_flat(problem.model, flat, [seed])[0]).x
    sigma = float(np.exp(flat.unflatten(x)["sigma_log__"][0])) if tune_noise else None
    rounds = []
    for _ in range(MAX_ROUNDS):
        tuned = replace(net, layer_prior_scales=tuple(scales), noise_sd=sigma)
        problem = _with_net(problem, tuned)
        previous, flat = flat, flat_model(problem.model, problem.temperature)
        x = find_map(flat.value_and_grad, _carry_over(previous, flat, x)).x
        step = _evidence_step(flat, x, hessian, problem, [w for w, _ in fan_ins], scales, sigma)
        rounds.append(step)
        change = np.abs(np.log(step["scales"] / scales)).max()
        if tune_noise:
            change = max(change, abs(np.log(step["sigma"] / sigma)))
        scales, sigma = step["scales"], step["sigma"]
        if change < TOLERANCE:
            break
    problem = _with_net(problem, replace(net, layer_prior_scales=tuple(scales), noise_sd=sigma))
    flat_final = flat_model(problem.model, problem.temperature)
    start = find_map(flat_final.value_and_grad, _carry_over(flat, flat_final, x)).x
    chosen = {
        "tuned_layer_prior_scales": [float(s) for s in scales],
        "tuned_noise_sd": sigma,
        "tuning_rounds": len(rounds),
    }
    return problem, {"rounds": _rounds_dataset(rounds, fan_ins), "chosen": chosen}, start


def _fan_ins(net: MLP, n_features: int) -> list[tuple[str, int]]:
    """(weight name, fan-in) of every layer, output layer last."""
    widths = [n_features, *net.hidden]
    return [(w, widths[i]) for i, (w, _) in enumerate(weight_names(net.n_hidden_layers))]


def _with_net(problem: Problem, net: MLP) -> Problem:
    """Return the same data and options with ``net``'s model."""
    model = build_model(net, problem.X, problem.y, problem.spec, problem.temperature)
    keep = [v.name for v in model.free_RVs + model.deterministics if v.name in problem.keep]
    keep += [v.name for v in model.deterministics if v.name == "sigma" and v.name not in keep]
    return replace(problem, net=net, model=model, keep=keep)


def _carry_over(old: FlatModel, new: FlatModel, x: np.ndarray) -> np.ndarray:
    """Return the values of ``x`` (flat in ``old``) for the variables ``new`` shares with it."""
    point = old.unflatten(np.asarray(x))
    return np.concatenate([np.ravel(point[name]) for name in new.shapes])


def _evidence_step(
    flat: FlatModel,
    x: np.ndarray,
    hessian: str,
    problem: Problem,
    weights: list[str],
    scales: np.ndarray,
    sigma: float | None,
) -> dict[str, Any]:
    """Find the prior sds (and noise sd) that maximise the evidence at the MAP ``x``."""
    import jax
    import jax.numpy as jnp

    index = flat.last_layer_indices() if hessian == "last_layer" else np.arange(flat.size)
    lik, prior = precision_parts(flat, x, hessian)
    point = flat.unflatten(np.asarray(x))
    masks = np.stack([_mask(flat, w)[index] for w in weights]).astype(np.float64)
    sq = np.array([np.sum(point[w] ** 2) for w in weights])
    sizes = np.array([point[w].size for w in weights], dtype=np.float64)
    rest_prior = prior - np.diag(masks.T @ (1 / scales**2))
    log_prior_rest = float(flat.log_prior(x)) - _gauss(sq, sizes, np.log(scales))
    log_lik, a = float(flat.log_likelihood(x, flat.head(x))), positive_semidefinite(lik)[0]
    if sigma is not None:
        n = problem.y.size
        resid = problem.y.reshape(-1) - _mean(flat, x, problem).reshape(-1)
        rss, a = float(resid @ resid), a * sigma**2

    def negative(theta: Any) -> Any:
        log_s = theta[: len(weights)]
        if sigma is None:
            fit, p = log_lik, a
        else:
            log_sig = theta[-1]
            fit = -rss / 2 * jnp.exp(-2 * log_sig) - n * log_sig - n / 2 * jnp.log(2 * jnp.pi)
            fit = fit / problem.temperature
            p = a * jnp.exp(-2 * log_sig)
        p = p + rest_prior + jnp.diag(masks.T @ jnp.exp(-2 * log_s))
        if hessian == "diag":
            logdet = jnp.sum(jnp.log(jnp.diag(p)))
        else:
            logdet = jnp.linalg.slogdet(p)[1]
        total = fit + _gauss(sq, sizes, log_s) + log_prior_rest - logdet / 2
        return -(total + len(index) / 2 * jnp.log(2 * jnp.pi))

    theta0 = np.log(scales) if sigma is None else np.append(np.log(scales), np.log(sigma))
    value_and_grad = jax.jit(jax.value_and_grad(negative))
    found = optimize.minimize(
        lambda t: tuple(np.asarray(v, dtype=np.float64) for v in value_and_grad(t)),
        theta0,
        jac=True,
        method="L-BFGS-B",
    )
    new_scales = np.exp(found.x[: len(weights)])
    return {
        "scales": new_scales,
        "sigma": None if sigma is None else float(np.exp(found.x[-1])),
        "log_evidence": -float(found.fun),
    }


def _gauss(sq: Any, sizes: np.ndarray, log_s: Any) -> Any:
    """Sum over layers of log N(W_l; 0, s_l^2 I) from the squared norms ``sq``."""
    import jax.numpy as jnp

    return jnp.sum(-sq / 2 * jnp.exp(-2 * log_s) - sizes * log_s - sizes / 2 * jnp.log(2 * jnp.pi))


def _mask(flat: FlatModel, name: str) -> np.ndarray:
    """Whether each flat position belongs to variable ``name``."""
    return np.concatenate([np.full(int(np.prod(s)), n == name) for n, s in flat.shapes.items()])


def _mean(flat: FlatModel, x: np.ndarray, problem: Problem) -> np.ndarray:
    """Return the network's ``mu`` at the training inputs, in the units of y."""
    head = np.asarray(flat.head(x))
    return problem.net.mean_of_head(head, {}, problem.spec)


def _rounds_dataset(rounds: list[dict[str, Any]], fan_ins: list[tuple[str, int]]) -> xr.Dataset:
    """Hyperparameters and log evidence after every tuning round."""
    data = {
        "log_evidence": ("round", [r["log_evidence"] for r in rounds]),
        "prior_scale": (("round", "layer"), np.stack([r["scales"] for r in rounds])),
    }
    if rounds[0]["sigma"] is not None:
        data["noise_sd"] = ("round", [r["sigma"] for r in rounds])
    coords = {"round": np.arange(1, len(rounds) + 1), "layer": [w for w, _ in fan_ins]}
    return xr.Dataset(data, coords=coords)
