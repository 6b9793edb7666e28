"""What every check of a diagnosis reads: validated inputs and the expensive things, computed once.

Relabelling, the predictive groups (pointwise log-likelihood and posterior
predictive draws) and the predictions at the probe inputs are computed here
once and handed to every check in :mod:`bnncat.report.checks`.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from bnncat.evaluation import calibration
from bnncat.identifiability.relabel import METHODS, canonicalize, resolve_net
from bnncat.models.attrs import write_attrs
from bnncat.models.inference.convergence_check import superchain_ids
from bnncat.models.inference.registry import fit_kind
from bnncat.models.prediction import invariant_predictions, net_and_spec
from bnncat.models.validation import check_choice, check_positive_float, check_positive_int, check_X
from bnncat.thresholds import MIN_DRAWS, MIN_DRAWS_GROUPED


@dataclass(frozen=True)
class DiagnosisInputs:
    """A fit, its net and data spec, and what the checks share."""

    idata: xr.DataTree
    net: Any
    spec: Any
    #: What the draws are: ``mcmc``, ``approximation``, ``ensemble`` or ``smc``.
    kind: str
    #: The relabelled fit (``canonicalize``) and its method.
    canon: xr.DataTree
    relabelling: str
    #: The fit with ``log_likelihood`` and ``posterior_predictive`` groups.
    groups: xr.DataTree
    X_probe: np.ndarray
    #: Symmetry-invariant predictions (chain, draw, probe, output) at ``X_probe``.
    predictions: np.ndarray
    test: tuple[np.ndarray, np.ndarray] | None
    settings: dict[str, Any]

    @property
    def loglik(self) -> np.ndarray:
        """Pointwise log-likelihood (chain, draw, obs) at the training data."""
        return self.groups["log_likelihood"]["y"].values


def gather_inputs(
    idata: xr.DataTree,
    *,
    X_probe: object,
    net: Any,
    method: str | None,
    X_test: object,
    y_test: object,
    settings: dict[str, Any],
) -> DiagnosisInputs:
    """Check every argument before any computation, then compute the shared things once."""
    net = resolve_net(idata, net)
    method = check_choice(method or _default_relabelling(net), METHODS, "method")
    settings = _check_settings(settings)
    _check_draws(idata)
    net, spec = net_and_spec(idata, net)
    if X_probe is None:
        if "constant_data" not in idata.children or "X" not in idata["constant_data"]:
            raise ValueError("idata has no constant_data['X']: give the probe inputs X_probe")
        X_probe = idata["constant_data"]["X"].values
    X_probe = check_X(X_probe, "X_probe", n_features=spec.n_features)
    test = calibration.check_test_data(idata, X_test, y_test, net=net)
    kind = fit_kind(idata)
    if "bnncat_config" not in idata.attrs:  # a user's own run: record what it is
        idata = idata.copy()
        method_name = idata.attrs.get("fit_method") or "unknown"
        write_attrs(idata, net, spec, {"method": method_name, "kind": kind, "random_seed": None})
    post = idata["posterior"]
    params = {k: post[k].values for k in post.data_vars}
    return DiagnosisInputs(
        idata=idata,
        net=net,
        spec=spec,
        kind=kind,
        canon=canonicalize(idata, method=method, net=net),
        relabelling=method,
        groups=calibration.add_predictive_groups(
            idata, net=net, random_seed=settings["random_seed"]
        ),
        X_probe=X_probe,
        predictions=invariant_predictions(net, params, X_probe, spec),
        test=test,
        settings=settings,
    )


def _check_draws(idata: xr.DataTree) -> None:
    """Refuse too few draws per chain, except from an ensemble, whose members are its draws.

    Chains in superchains count per superchain (nested R-hat asks the groups), but
    each chain still needs the few draws that split R-hat halves.
    """
    if "posterior" not in idata.children:
        raise ValueError("idata has no posterior group: fit the model first")
    draws = int(idata["posterior"].sizes.get("draw", 0))
    groups = superchain_ids(idata["posterior"])
    pooled = draws * (len(groups) // len(set(groups))) if groups is not None else draws
    if draws < 1 or (pooled < MIN_DRAWS and fit_kind(idata) != "ensemble"):
        raise ValueError(
            f"idata has {draws} draws per chain; diagnose needs at least {MIN_DRAWS} "
            "(per superchain, where chains are grouped) for R-hat and ESS to mean anything: "
            "draw more"
        )
    if groups is not None and draws < MIN_DRAWS_GROUPED:
        raise ValueError(
            f"idata has {draws} draws per chain; diagnose needs at least {MIN_DRAWS_GROUPED} "
            "per chain in superchains (split R-hat halves each chain): draw more"
        )


def _default_relabelling(net: Any) -> str:
    """``sort`` where constraints already make every draw canonical, else ``pivot``."""
    return "sort" if net.samples_canonically else "pivot"


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    out["rhat_threshold"] = check_positive_float(out["rhat_threshold"], "rhat_threshold")
    if out["rhat_threshold"] <= 1:
        raise ValueError(f"rhat_threshold must be > 1; got {out['rhat_threshold']}")
    out["mode_threshold"] = check_positive_float(out["mode_threshold"], "mode_threshold")
    out["max_treedepth"] = check_positive_int(out["max_treedepth"], "max_treedepth")
    out["max_unit_draws"] = check_positive_int(out["max_unit_draws"], "max_unit_draws")
    return out
