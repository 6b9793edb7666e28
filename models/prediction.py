"""Posterior predictive of a fitted catalogue model at new inputs."""

from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bnncat.models.attrs import read_net, stored_or_given_net
from bnncat.models.data_spec import DataSpec
from bnncat.models.inference.linearized import check_linearizable, linearized_draws
from bnncat.models.validation import check_choice, check_positive_int, check_X

PREDICTIVES = ("sampled", "linearized")
#: Memory ``predict`` may ask for its draws before it refuses and points to ``predict_summary``.
MAX_BYTES = 2**31
#: Floats the forward pass of one block of draws may hold in its widest array
#: (draws x rows x widest layer): 2 MiB of float64. Larger blocks are slower, not
#: faster: each of their arrays is fresh memory the system must map and zero.
FORWARD_FLOATS = 2**18


def predict(
    idata: xr.DataTree,
    X_new: object,
    *,
    net: Any = None,
    random_seed: int | None = None,
    predictive: str = "sampled",
    max_bytes: int | None = MAX_BYTES,
) -> xr.DataTree:
    """Network output and posterior predictive draws at any number of new rows.

    Every posterior draw passes through the network in NumPy, vectorised over
    blocks of draws (a fit of thousands of chains has hundreds of thousands of
    draws: PyMC's ``sample_posterior_predictive`` evaluates them one at a time),
    and the likelihood draws one ``y`` per draw and row.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit from a catalogue model (``net.fit`` or ``load``), or, with
        ``net`` given, your own ``pm.sample`` / ``pm.fit`` result on a model
        from ``net.build(X, y)``.
    X_new : array-like of shape (m, n_features)
        New inputs in the original units.
    net : MLP, optional
        The model configuration. Read from ``idata.attrs`` when omitted; when
        given it must match them.
    random_seed : int, optional
        Seed for the predictive draws of ``y``.
    predictive : {"sampled", "linearized"}
        Pass every posterior draw through the network, or, for a Laplace fit,
        through the network linearised at each restart's MAP (the GLM
        predictive: see :mod:`bnncat.models.inference.linearized`).
    max_bytes : int or None
        Refuse, before any work, to hold more than this many bytes of draws
        (mu and y: draws x rows x outputs each, twice while PyMC stacks them); ``None`` for no
        limit. :func:`~bnncat.models.predict_summary` gives per-row summaries
        in bounded memory for any number of rows.

    Returns
    -------
    xarray.DataTree
        Group ``predictions`` with ``mu`` (network output: mean function for
        regression, logits for classification) and ``y`` (predictive draws),
        dims ``(chain, draw, obs, ...)``, and ``predictions_constant_data``
        with ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import predict
    >>> pred = predict(idata, np.linspace(0, 60, 37)[:, None])  # doctest: +SKIP
    >>> pred.predictions["mu"].shape  # doctest: +SKIP
    (4, 1000, 37, 1)
    """
    net, spec, X, random_seed = check_prediction(idata, X_new, net, random_seed, predictive)
    _check_memory(idata, X.shape[0], 2 * spec.n_outputs, max_bytes)  # mu and y
    model = net.build_validated(X, None, spec)  # the names and coords of mu and y
    if predictive == "linearized":
        mu, y = linearized_draws(idata, X, net, spec, model, random_seed)
    else:
        mu, y = sampled_draws(idata, X, net, spec, random_seed)
    return _predictions_tree(idata["posterior"], model, mu, y, X)


def sampled_draws(
    idata: xr.DataTree, X: np.ndarray, net: Any, spec: DataSpec, random_seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Network output ``mu`` and one ``y`` per posterior draw at ``X``, (chain, draw, ...)."""
    post = idata["posterior"]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    params = {  # per-row deterministics of the training data are not needed here
        k: post[k].values.reshape(chains * draws, *post[k].shape[2:])
        for k in post.data_vars
        if "obs" not in post[k].dims
    }
    step = max(1, FORWARD_FLOATS // (max(X.shape[0], 1) * net_width(net, spec)))
    starts = range(0, chains * draws, step)
    seeds = np.random.SeedSequence(random_seed).generate_state(len(starts))
    mu, y = [], []
    for start, seed in zip(starts, seeds, strict=True):
        block = {k: v[start : start + step] for k, v in params.items()}
        mu.append(net.forward(block, X, spec))
        obs = net.observation_parameters(block, X, spec)
        y.append(predictive_draws(net, obs, X.shape[0], spec, int(seed)))
    mu, y = np.concatenate(mu), np.concatenate(y)
    return mu.reshape(chains, draws, *mu.shape[1:]), y.reshape(chains, draws, *y.shape[1:])


def net_width(net: Any, spec: Any) -> int:
    """Return the widest array per draw and row of a forward pass: a hidden layer or the head."""
    return max((*getattr(net, "hidden", ()), net.head_size(spec), 1))


def predictive_draws(
    net: Any, obs: dict[str, np.ndarray], n_rows: int, spec: Any, random_seed: int
) -> np.ndarray:
    """One draw of y per parameter draw and row: (draw, n, output), or (draw, n) labels."""
    n_draws = next(iter(obs.values())).shape[0]
    regression = net.lik.task == "regression"
    shape = (n_draws, n_rows) + ((spec.n_outputs,) if regression else ())
    # the parameters broadcast to the full shape, so that every row gets its own draw
    full = {k: np.broadcast_to(v, shape + np.shape(v)[len(shape) :]) for k, v in obs.items()}
    out = net.lik.draw(full, random_seed)
    return out if regression else out.astype(np.int64)


def check_prediction(
    idata: xr.DataTree, X_new: object, net: Any, random_seed: object, predictive: str
) -> tuple[Any, DataSpec, Any, int | None]:
    """Validate what a prediction takes; return the net, its data spec, the inputs and seed."""
    if "posterior" not in idata.children:
        raise ValueError("idata has no posterior group: fit the model first")
    if check_choice(predictive, PREDICTIVES, "predictive") == "linearized":
        check_linearizable(idata)
    net, spec = net_and_spec(idata, net)
    X = check_X(X_new, "X_new", n_features=spec.n_features)
    if random_seed is not None:
        random_seed = check_positive_int(random_seed, "random_seed", minimum=0)
    return net, spec, X, random_seed


def _check_memory(idata: xr.DataTree, n_rows: int, per_row: int, max_bytes: int | None) -> None:
    """Refuse a prediction whose draws would not fit ``max_bytes``, naming what would."""
    if max_bytes is None:
        return
    max_bytes = check_positive_int(max_bytes, "max_bytes")
    post = idata["posterior"]
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    need = 2 * 8 * n_draws * n_rows * per_row
    if need > max_bytes:
        raise ValueError(
            f"X_new has {n_rows} rows: the draws of mu and y at {n_draws} posterior draws "
            f"would take {need / 2**30:.1f} GiB (max_bytes={max_bytes / 2**30:.1f} GiB). "
            "Use predict_summary(idata, X_new) for per-row means, sds and quantiles in "
            "bounded memory, predict on fewer rows or draws "
            "(idata.isel(draw=slice(None, None, 10))), or raise max_bytes"
        )


def net_and_spec(idata: xr.DataTree, net: Any) -> tuple[Any, DataSpec]:
    """Return the net and data spec of a fit: from its attrs, or from ``net`` and its data."""
    net = stored_or_given_net(idata, net, example="predict(idata, X_new, net=net)")
    if "bnncat_config" in idata.attrs:
        return net, read_net(idata)[1]
    return net, spec_from_groups(idata, net)


def spec_from_groups(idata: xr.DataTree, net: Any) -> DataSpec:
    """Recover the data spec of a user's own ``pm.sample`` run from its data groups."""
    missing = [g for g in ("constant_data", "observed_data") if g not in idata.children]
    if missing:
        raise ValueError(
            f"idata lacks {missing}: cannot recover the training data's names and scaling"
        )
    X = idata["constant_data"]["X"]
    y = idata["observed_data"]["y"]
    X_df = pd.DataFrame(X.values, columns=[str(c) for c in X.coords["feature"].values])
    y_raw = y.values
    if "output" in y.dims:
        y_raw = pd.DataFrame(y.values, columns=[str(c) for c in y.coords["output"].values])
    return net.data_spec(X_df, y_raw)[2]


def invariant_predictions(
    net: Any, params: dict[str, np.ndarray], X: np.ndarray, spec: Any
) -> np.ndarray:
    """Symmetry-invariant predictions (..., m, k) at inputs ``X``, per draw of ``params``.

    Regression: the predictive mean E[y | x] (of a mixture, too). Classification:
    class probabilities from the likelihood, because logits of a categorical net
    are only defined up to a shift common to all classes (binary: p(class 1) only).
    """
    if net.lik.task == "regression":
        return net.forward(params, X, spec)
    obs = net.observation_parameters(params, X, spec)
    probs = np.exp(net.lik.class_log_probs(obs, spec.n_classes))
    return probs[..., 1:] if net.lik.binary else probs


def _predictions_tree(
    post: xr.DataTree, model: pm.Model, mu: np.ndarray, y: np.ndarray, X: np.ndarray
) -> xr.DataTree:
    """Build the ``predictions`` and ``predictions_constant_data`` groups as ``predict`` does."""
    dims = model.named_vars_to_dims
    coords = {d: model.coords[d] for d in (*dims["mu"], *dims["y"], "feature")}
    coords = {d: np.arange(len(X)) if c is None else np.asarray(c) for d, c in coords.items()}
    coords |= {"chain": post["chain"].values, "draw": post["draw"].values}
    predictions = xr.Dataset(
        {
            "mu": (("chain", "draw", *dims["mu"]), mu),
            "y": (("chain", "draw", *dims["y"]), y),
        },
        coords={k: v for k, v in coords.items() if k != "feature"},
    )
    constant = xr.Dataset(
        {"X": (("obs", "feature"), X)}, coords={k: coords[k] for k in ("obs", "feature")}
    )
    groups = {"predictions": predictions, "predictions_constant_data": constant}
    return xr.DataTree.from_dict(groups)
