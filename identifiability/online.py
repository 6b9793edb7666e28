"""Online updating: today's posterior, as a Gaussian on relabelled weights, is tomorrow's prior.

A BNN posterior holds H!·2^H symmetric copies of every mode, and the draws of a
fit visit several of them (NUTS chains land in different copies; Laplace restarts
too). A Gaussian fitted to such draws is centred on an average of the copies, a
point where the network computes nothing the data support, and spread over all of
them: as a prior it forgets what the data said. Relabelling (``canonicalize``)
first maps every draw into one copy, where the posterior is a single bump that a
Gaussian can summarise; the new fit then starts from what was learnt. The README
("Online updating") measures the difference.
"""

from typing import Any

import numpy as np
import xarray as xr

from bnncat.identifiability.relabel import canonicalize
from bnncat.models.attrs import read_fit_options, read_net, write_attrs
from bnncat.models.inference.dispatch import check_option_names, fit
from bnncat.models.inference.flat_draws import flat_posterior
from bnncat.models.inference.problem import GaussianPrior, gaussian_prior
from bnncat.models.inference.registry import METHODS
from bnncat.models.validation import check_choice, check_X

PRIORS = ("full", "diag", "laplace")
#: Added to the diagonal of a covariance estimated from draws (keeps it invertible).
_JITTER = 1e-9


def update(
    idata: xr.DataTree,
    X_new: object,
    y_new: object,
    *,
    method: str = "nuts",
    prior: str = "full",
    relabel: bool = True,
    **options: Any,
) -> xr.DataTree:
    """Fit a new batch ``(X_new, y_new)`` with the posterior of ``idata`` as the prior.

    Parameters
    ----------
    idata : xarray.DataTree
        A catalogue fit (or a previous ``update``) of the same net.
    X_new, y_new : array-like
        The new batch, with the columns of the first fit. Its inputs and targets
        are scaled as the first fit's were, so that the weights keep their meaning.
    method : str
        Any registered method, with its options in ``options``.
    prior : {"full", "diag", "laplace"}
        A Gaussian with the mean and covariance (or only the variances) of the
        posterior draws, in the unconstrained space, after relabelling; or, for a
        Laplace fit, its best restart's Gaussian itself (one mode: no relabelling).
    relabel : bool
        Relabel the draws before fitting the Gaussian. ``False`` only shows why it
        is needed (see the module docstring).
    **options
        Options of ``method``.

    Returns
    -------
    xarray.DataTree
        The new fit; its attrs record the update (``update_prior``,
        ``update_relabel``, ``update_batch``: 2 for the first update).

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP, fit
    >>> from bnncat.identifiability import update
    >>> ds = data.load("sine", n=200, seed=1)
    >>> first = fit(MLP((4,)), ds.X[:100], ds.y[:100], random_seed=1)  # doctest: +SKIP
    >>> both = update(first, ds.X[100:], ds.y[100:], random_seed=2)  # doctest: +SKIP
    """
    check_option_names(METHODS[check_choice(method, METHODS, "method")], options)
    prior = check_choice(prior, PRIORS, "prior")
    if not isinstance(relabel, bool):
        raise TypeError(f"relabel must be True or False; got {relabel!r}")
    if "posterior" not in idata.children:
        raise ValueError("idata has no posterior group: update needs a fitted posterior")
    if options.get("marglik"):
        raise ValueError("marglik tunes the builder's prior, which update replaces")
    net, spec = read_net(idata)
    check_X(X_new, "X_new", n_features=spec.n_features)
    gaussian = previous_posterior(idata, net, prior, relabel)
    with gaussian_prior(gaussian):
        new = fit(net, X_new, y_new, method=method, **options)
    batch = int(read_fit_options(idata).get("update_batch", 1)) + 1
    recorded = read_fit_options(new) | {
        "update_prior": prior,
        "update_relabel": relabel,
        "update_batch": batch,
    }
    write_attrs(new, *read_net(new), recorded)
    return new


def previous_posterior(idata: xr.DataTree, net: Any, prior: str, relabel: bool) -> GaussianPrior:
    """Return a Gaussian summary of ``idata``'s posterior in its model's unconstrained space."""
    _, spec = read_net(idata)
    model = net.build_validated(_rows(idata, spec), None, spec)
    if prior == "laplace":
        mean, cov = _laplace_gaussian(idata)
        names, _ = flat_posterior(model, idata["posterior"])
        return GaussianPrior(tuple(names), mean, cov, spec)
    # pivot: each draw matched to the running mean, the tightest cluster a Gaussian can summarise
    source = canonicalize(idata, net=net, method="pivot") if relabel else idata
    names, draws = flat_posterior(model, source["posterior"])
    flat = draws.reshape(-1, draws.shape[-1])
    mean = flat.mean(axis=0)
    cov = np.cov(flat, rowvar=False) if prior == "full" else np.diag(flat.var(axis=0, ddof=1))
    cov = np.atleast_2d(cov) + _JITTER * np.eye(len(mean))
    return GaussianPrior(tuple(names), mean, cov, spec)


def _laplace_gaussian(idata: xr.DataTree) -> tuple[np.ndarray, np.ndarray]:
    """Return the Gaussian of a Laplace fit's restart with the highest MAP density."""
    if "laplace" not in idata.children:
        raise ValueError("prior='laplace' needs a Laplace fit (method='laplace')")
    modes = idata["laplace"]
    best = int(np.argmax(modes["map_logp"].values))
    cov = modes["cov"].values[best]
    held = np.diag(cov) == 0  # last_layer: hidden layers at their MAP; keep them nearly so
    cov = cov + np.diag(np.where(held, _JITTER, 0.0))
    return modes["mean"].values[best], cov


def _rows(idata: xr.DataTree, spec: Any) -> np.ndarray:
    """Return inputs to build the model on (its parameters do not depend on them)."""
    if "constant_data" in idata.children:
        return idata["constant_data"]["X"].values
    return np.zeros((1, spec.n_features))
