"""``fit``: one entry point to every registered inference method."""

from typing import Any

import xarray as xr

from bnncat.models.inference.problem import check_seed
from bnncat.models.inference.registry import METHODS, Method
from bnncat.models.jax_runtime import release_compiled_programs
from bnncat.models.validation import check_choice


def fit(net: Any, X: object, y: object, *, method: str = "nuts", **options: Any) -> xr.DataTree:
    """Fit ``net`` to ``(X, y)`` by ``method`` and return the posterior as an ArviZ DataTree.

    Every method takes ``draws``, ``random_seed``, ``store_mu`` and
    ``progressbar``; the others are its own (see ``bnncat.models.inference.fit_<method>``).
    ``fit`` checks that ``method`` is registered and takes ``options``, resolves the
    seed (drawn and stored in the attrs when omitted, so every fit can be
    repeated) and hands over to the method, which validates its options before
    any sampling and records method, kind, options, seed and library versions in
    the attrs.

    Parameters
    ----------
    net : ModelBuilder
        The model configuration (``MLP``, ``OrderedMLP``, ``MixtureRegressor``).
    X : array-like of shape (n, n_features)
        Inputs.
    y : array-like
        Targets: real values (n,) or (n, n_outputs) for regression, integer
        labels (n,) for classification.
    method : str
        A registered method (``bnncat.models.inference.METHODS``): ``"nuts"``,
        ``"advi"``, ``"fullrank_advi"``, ``"laplace"``, ``"pathfinder"``,
        ``"ensemble"``, ``"swag"``, ``"dei"``, ``"mclmc"``, ``"chees"``, ``"smc"``,
        ``"sgmcmc"``;
        each is documented at its ``bnncat.models.inference.fit_<method>``.
    **options
        The method's options.

    Returns
    -------
    xarray.DataTree
        ``posterior`` with dims ``chain`` (an independent run) and ``draw``,
        ``sample_stats``, ``observed_data``, ``constant_data`` and what the method
        adds; the root attrs hold everything ``predict``, ``diagnose`` and
        ``load`` need.

    Raises
    ------
    ValueError
        For an unknown method, an option the method does not take (the message
        lists its options) or a bad value, before any sampling.

    Examples
    --------
    >>> from bnncat import data
    >>> from bnncat.models import MLP, fit
    >>> ds = data.load("mcycle")
    >>> idata = fit(MLP(hidden=(8,)), ds.X, ds.y, draws=500, random_seed=1)  # doctest: +SKIP
    """
    entry = METHODS[check_choice(method, METHODS, "method")]
    check_option_names(entry, options)
    options["random_seed"] = check_seed(options.get("random_seed"))
    try:
        return entry.fit(net, X, y, **options)
    finally:
        release_compiled_programs()


def check_option_names(entry: Method, options: dict[str, Any]) -> None:
    """Raise, naming the method's own options, when ``options`` holds one it does not take."""
    for name in options:
        if name not in entry.options:
            owners = [m.name for m in METHODS.values() if name in m.options]
            fallback = f"an option of method={owners[0]!r}" if owners else None
            why = entry.refuses.get(name, fallback)
            raise ValueError(
                f"method={entry.name!r} takes no option {name!r}"
                + (f" ({why})" if why else "")
                + f"; its options are: {', '.join(entry.options)}"
            )
