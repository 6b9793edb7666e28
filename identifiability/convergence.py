"""Convergence in three spaces: raw weights, relabelled weights and predictions.

R-hat of raw weights mixes two questions: do the chains sit in the same
symmetric copy of the posterior, and do they agree on the function? Relabelled
weights (``canonicalize``) remove the first question where relabelling is
unambiguous; predictions f(x*) at probe inputs and the pointwise
log-likelihood are invariant under every symmetry and answer the second alone.
Every R-hat and ESS here is ArviZ's (rank-normalised split R-hat, bulk and
tail ESS).
"""

from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bnncat.thresholds import DEFAULT_MAX_TREEDEPTH, RHAT_MAX

#: The spaces of the convergence table, in the order of its rows.
SPACES = ("raw weights", "relabelled weights", "predictions", "log-likelihood")


def weight_dataset(posterior: xr.Dataset | xr.DataTree) -> xr.Dataset:
    """Return the sampled parameters of a posterior: everything but the network output ``mu``."""
    ds = posterior.to_dataset() if isinstance(posterior, xr.DataTree) else posterior
    return ds[[n for n in ds.data_vars if n != "mu"]]


def space_row(ds: xr.Dataset, *, rhat_threshold: float = RHAT_MAX) -> dict[str, Any]:
    """Max R-hat, share of quantities above ``rhat_threshold``, min bulk and tail ESS.

    R-hat is NaN for a single chain (it compares chains); ESS is still defined.
    """
    n = int(
        sum(
            np.prod([ds[v].sizes[d] for d in ds[v].dims if d not in ("chain", "draw")])
            for v in ds.data_vars
        )
    )
    row: dict[str, Any] = {"quantities": n}
    if ds.sizes["chain"] > 1:
        rhat = _flat(az.rhat(ds))
        finite = rhat[np.isfinite(rhat)]  # constant quantities (fixed signs) have no R-hat
        row["max_rhat"] = float(finite.max()) if finite.size else float("nan")
        row["share_rhat_above"] = float((finite > rhat_threshold).mean()) if finite.size else 0.0
    else:
        row["max_rhat"] = float("nan")
        row["share_rhat_above"] = float("nan")
    for kind in ("bulk", "tail"):
        ess = _flat(az.ess(ds, method=kind))
        ess = ess[np.isfinite(ess)]
        row[f"min_ess_{kind}"] = float(ess.min()) if ess.size else float("nan")
    return row


def nested_rhat_row(
    ds: xr.Dataset, superchain_ids: np.ndarray, *, rhat_threshold: float = RHAT_MAX
) -> dict[str, Any]:
    """Max nested R-hat (Margossian et al. 2024) with chains grouped into superchains.

    For many short chains started in groups from common points (chains from ensemble
    members: each member a superchain), it asks whether the superchains agree, which
    plain R-hat over-asks of short chains. ESS columns are left empty (ESS is per chain).
    """
    rhat = _flat(az.rhat_nested(ds, superchain_ids=list(superchain_ids)))
    finite = rhat[np.isfinite(rhat)]
    n = int(
        sum(
            np.prod([ds[v].sizes[d] for d in ds[v].dims if d not in ("chain", "draw")])
            for v in ds.data_vars
        )
    )
    return {
        "quantities": n,
        "max_rhat": float(finite.max()) if finite.size else float("nan"),
        "share_rhat_above": float((finite > rhat_threshold).mean()) if finite.size else 0.0,
        "min_ess_bulk": float("nan"),
        "min_ess_tail": float("nan"),
    }


def _flat(ds: xr.Dataset) -> np.ndarray:
    return np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])


def convergence_table(
    spaces: dict[str, xr.Dataset],
    *,
    rhat_threshold: float = RHAT_MAX,
    superchain_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per space (see :data:`SPACES`) of :func:`space_row`'s figures.

    With ``superchain_ids`` (chains started from ensemble members), rows of nested
    R-hat for the predictions and the log-likelihood follow.
    """
    rows = {name: space_row(ds, rhat_threshold=rhat_threshold) for name, ds in spaces.items()}
    if superchain_ids is not None:
        for name in ("predictions", "log-likelihood"):
            rows[f"{name}, nested R-hat"] = nested_rhat_row(
                spaces[name], superchain_ids, rhat_threshold=rhat_threshold
            )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "space"
    return table.rename(columns={"share_rhat_above": f"share_rhat_>{rhat_threshold:g}"})


def sampler_health(
    idata: xr.DataTree, *, max_treedepth: int = DEFAULT_MAX_TREEDEPTH
) -> pd.DataFrame:
    """Per chain: draws, divergences, tree-depth saturation, E-BFMI, mean acceptance, step size.

    An empty frame when the fit has no sampler statistics (ADVI).
    """
    if "sample_stats" not in idata.children:
        return pd.DataFrame()
    stats = idata["sample_stats"].to_dataset()
    chains = stats.sizes["chain"]
    out = pd.DataFrame(index=pd.RangeIndex(chains, name="chain"))
    out["draws"] = stats.sizes["draw"]
    if "diverging" in stats:
        out["divergences"] = stats["diverging"].sum("draw").values.astype(int)
    for flag in ("reached_max_treedepth", "maxdepth_reached"):
        if flag in stats:
            out["treedepth_saturated"] = stats[flag].mean("draw").values
            break
    else:
        if "tree_depth" in stats:
            out["treedepth_saturated"] = (stats["tree_depth"] >= max_treedepth).mean("draw").values
    if "energy" in stats:
        out["e_bfmi"] = np.asarray(az.bfmi(idata)["energy"].values).reshape(-1)[:chains]
    for name, col in (("acceptance_rate", "mean_accept"), ("step_size", "step_size")):
        if name in stats:
            out[col] = stats[name].mean("draw").values
    return out
