"""Mixture-of-Gaussians likelihood regressor: a Bayesian mixture density network.

Two forms, one builder (K components; each output dimension has its own
mixture; everything in the units of ``y``):

``form="noise"``
    y = f(x; θ) + ε with ε ~ Σ_k π_k N(loc_k, σ_k): global mixture ``weights``
    π ~ Dirichlet(2), component locations ``loc`` and scales ``sigma``. The
    locations are centred, Σ_k π_k loc_k = 0 (from free ``loc_raw``), so the
    noise has mean zero: f(x) = E[y | x], which identifies ``b_out``. A
    concentration of 2 keeps a weight off 0, where a component's location and
    scale would fall back to the prior. The components are exchangeable while
    sampling and ``canonicalize`` sorts them by location afterwards; with
    ``ordered=True`` an ``Ordered`` transform on ``loc_raw`` fixes the labels
    instead, which mixes more slowly where two components share a location
    (a scale mixture: README, "Mixture regressor under NUTS and ADVI").
``form="mdn"``
    The network's last layer gives, for every input and output, K mixture
    logits, K means and K scales (softplus, floor 1e-3 in standard units):
    ``W_out`` (hidden{L}, head), ``b_out`` (head) with ``head`` =
    output × (logit, mean, scale) × component (Bishop 1994). With
    ``ordered=True`` the mean-head *biases* ``b_out_mean`` (output, component)
    are ordered. Since each component's mean is ``W_out[:, mean_k] · h(x) +
    b_out_mean[k]``, this orders the means where the hidden representation
    contributes equally to all of them (at h(x) = 0 in particular), not at
    every x: a permutation of components permutes these biases and nothing
    else fixes them, so it removes label switching for generic parameters.
    Without it, ``canonicalize`` relabels components by the same key after
    sampling.

``mu`` is the predictive mean E[y | x] in both forms.
"""

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from bnncat.models.attrs import register_model
from bnncat.models.data_spec import DataSpec
from bnncat.models.mlp import MLP, mlp_forward, weight_prior_scale
from bnncat.models.normal_mixture import NormalMixture
from bnncat.models.validation import check_choice, check_positive_int

FORMS = ("noise", "mdn")
HEAD_KINDS = ("logit", "mean", "scale")
SCALE_FLOOR = 1e-3  # smallest MDN component sd, in standardised units of y
#: Dirichlet concentration of the noise form's weights (> 1: no component emptied).
WEIGHTS_CONCENTRATION = 2.0
#: The noise form's variables with a component axis last, permuted together by relabelling.
NOISE_COMPONENT_VARIABLES = ("weights", "loc", "sigma", "loc_raw")


@register_model
@dataclass(frozen=True)
class MixtureRegressor(MLP):
    """An MLP regressor whose likelihood is a mixture of K Gaussians.

    Same options as :class:`MLP` (the likelihood is always Gaussian
    components), plus:

    n_components : int
        K >= 1 components per output.
    form : {"noise", "mdn"}
        Global mixture noise around f(x), or a mixture density network whose
        weights, means and scales depend on x. See the module docstring.
    ordered : bool, optional
        Order the components by a transform while sampling (default: off;
        relabel afterwards with ``canonicalize``).

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models import MixtureRegressor
    >>> X = np.linspace(-1, 1, 30)[:, None]
    >>> net = MixtureRegressor(hidden=(4,), n_components=3, form="mdn")
    >>> model = net.build(X, np.sin(3 * X[:, 0]))
    >>> model.named_vars_to_dims["W_out"]
    ('hidden1', 'head')
    """

    n_components: int = field(default=2, kw_only=True)
    form: str = field(default="noise", kw_only=True)
    ordered: bool | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.likelihood != "normal":
            raise ValueError(
                f"likelihood={self.likelihood!r}: MixtureRegressor mixes Gaussian components; "
                "leave likelihood='normal'"
            )
        if self.noise_sd is not None:
            raise ValueError("noise_sd fixes an MLP's noise sd; a mixture learns its components'")
        check_positive_int(self.n_components, "n_components")
        check_choice(self.form, FORMS, "form")
        if self.ordered is None:
            object.__setattr__(self, "ordered", False)
        if not isinstance(self.ordered, bool):
            raise TypeError(f"ordered must be True, False or None; got {self.ordered!r}")

    @property
    def head_dim(self) -> str:
        """Dim of the last layer: ``output`` (noise form) or ``head`` (MDN)."""
        return "output" if self.form == "noise" else "head"

    def head_size(self, spec: DataSpec) -> int:
        """Width of the last layer: the outputs, or K logits, means and scales of each."""
        if self.form == "noise":
            return spec.n_outputs
        return len(HEAD_KINDS) * self.n_components * spec.n_outputs

    def head_label(self) -> str:
        """Describe the last layer for titles: the form and number of components."""
        return f"{self.form}, K={self.n_components}"

    def extra_coords(self, spec: DataSpec) -> dict[str, Sequence]:
        """Add the ``component`` coords, and the MDN's ``head`` coords."""
        K = self.n_components
        coords: dict[str, Sequence] = {"component": np.arange(K)}
        if self.form == "mdn":
            coords["head"] = [
                f"{out}:{kind}{k}"
                for out in spec.output_names
                for kind in HEAD_KINDS
                for k in range(K)
            ]
        return coords

    def data_spec(self, X: object, y: object):
        """Validate like :meth:`MLP.data_spec`; warn when K is large for the data."""
        X_arr, y_arr, spec = super().data_spec(X, y)
        if self.n_components > max(1, X_arr.shape[0] // 10):
            warnings.warn(
                f"n_components={self.n_components} for {X_arr.shape[0]} rows: fewer than 10 "
                "rows per component leaves components to the prior",
                UserWarning,
                stacklevel=3,
            )
        return X_arr, y_arr, spec

    def layer_parameters(
        self, layer: int, fan_in: int, dims: tuple[str, str], spec: DataSpec
    ) -> tuple[Any, Any]:
        """Hidden layers as in MLP; the last layer ends in the noise or MDN head."""
        if layer < self.n_hidden_layers or self.form == "noise":
            return super().layer_parameters(layer, fan_in, dims, spec)
        W = pm.Normal("W_out", 0.0, weight_prior_scale(self, "W_out", fan_in), dims=dims)
        if not self.ordered:
            return W, pm.Normal("b_out", 0.0, self.bias_scale, dims="head")
        D, K = spec.n_outputs, self.n_components
        kinds = {
            kind: pm.Normal(
                f"b_out_{kind}",
                0.0,
                self.bias_scale,
                dims=("output", "component"),
                **(
                    {
                        "transform": pm.distributions.transforms.Ordered(),
                        "initval": np.tile(np.linspace(-1.0, 1.0, K), (D, 1)),
                    }
                    if kind == "mean"
                    else {}
                ),
            )
            for kind in HEAD_KINDS
        }
        b = pt.stack([kinds[k] for k in HEAD_KINDS], axis=1).reshape((-1,))
        return W, pm.Deterministic("b_out", b, dims="head")

    def add_likelihood(self, net_out: Any, y: np.ndarray | None, spec: DataSpec) -> None:
        """Mixture weights, component means and scales, ``mu`` and the mixture ``y``."""
        D, K = spec.n_outputs, self.n_components
        y_loc, y_scale = np.asarray(spec.y_loc), np.asarray(spec.y_scale)
        if self.form == "noise":
            weights = pm.Dirichlet(
                "weights", a=np.full((D, K), WEIGHTS_CONCENTRATION), dims=("output", "component")
            )
            loc = pm.Deterministic(
                "loc",
                noise_locations(weights, D, K, ordered=self.ordered) * y_scale[:, None],
                dims=("output", "component"),
            )
            sigma = pm.HalfNormal(
                "sigma", sigma=np.repeat(y_scale[:, None], K, axis=1), dims=("output", "component")
            )
            f = y_loc + y_scale * net_out  # (obs, output)
            means = f[:, :, None] + loc[None]
            w, s = weights[None], sigma[None]
        else:
            head = net_out.reshape((net_out.shape[0], D, len(HEAD_KINDS), K))
            w = pt.special.softmax(head[:, :, 0], axis=-1)
            means = y_loc[:, None] + y_scale[:, None] * head[:, :, 1]
            s = y_scale[:, None] * (pt.softplus(head[:, :, 2]) + SCALE_FLOOR)
        pm.Deterministic("mu", (w * means).sum(axis=-1), dims=("obs", "output"))
        self.lik.observe({"w": w, "mu": means, "sigma": s}, y, ("obs", "output"))

    # -- NumPy side ----------------------------------------------------------------------

    def _head(self, b: np.ndarray) -> np.ndarray:
        """View a (..., head) array as (..., output, kind, component)."""
        K = self.n_components
        return b.reshape(*b.shape[:-1], -1, len(HEAD_KINDS), K)

    def component_labels(
        self, params: Mapping[str, np.ndarray], X: np.ndarray | None, spec: DataSpec | None
    ) -> np.ndarray | None:
        """Order of the components, per draw and output, by their location.

        The noise form sorts by ``loc``. The MDN sorts by each component's mean
        averaged over the training inputs ``X``: where branches differ, their
        averages are far apart, while the mean-head biases alone overlap between
        neighbouring components (sorting by them swapped components within a
        chain in about a fifth of the draws on ``inverse_sine``). None where a
        constraint already fixes the labels, or for a single component.
        """
        if self.ordered or self.n_components == 1:
            return None
        if self.form == "noise":
            return np.argsort(np.asarray(params["loc"]), axis=-1)
        if X is None:
            raise ValueError(
                "relabelling the components of an unordered MDN needs the training inputs: "
                "idata has no constant_data group with X"
            )
        means = self.observation_parameters(params, X, spec)["mu"]  # (..., n, output, component)
        return np.argsort(means.mean(axis=-3), axis=-1)

    def apply_component_labels(
        self, params: Mapping[str, np.ndarray], perm: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Permute the components: new component k is old ``perm[..., d, k]``."""
        out = dict(params)
        if self.form == "noise":
            for name in NOISE_COMPONENT_VARIABLES:
                if name in out:
                    out[name] = np.take_along_axis(np.asarray(out[name]), perm, axis=-1)
            return out
        K, n_kinds = self.n_components, len(HEAD_KINDS)
        D = perm.shape[-2]
        base = (np.arange(D)[:, None] * n_kinds + np.arange(n_kinds)[None, :]) * K  # (D, kinds)
        index = base[..., None] + perm[..., :, None, :]  # (..., D, kinds, K)
        index = index.reshape(*index.shape[:-3], D * n_kinds * K)
        out["b_out"] = np.take_along_axis(np.asarray(params["b_out"]), index, axis=-1)
        out["W_out"] = np.take_along_axis(np.asarray(params["W_out"]), index[..., None, :], axis=-1)
        return out

    def free_pieces(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``b_out_logit/mean/scale`` from ``b_out`` for the ordered MDN."""
        if self.form == "noise" or not self.ordered:
            return {}
        head = self._head(np.asarray(params["b_out"]))
        return {f"b_out_{kind}": head[..., i, :] for i, kind in enumerate(HEAD_KINDS)}

    @property
    def lik(self) -> NormalMixture:
        """The observation model: a K-component Gaussian mixture per output."""
        return NormalMixture(self.n_components)

    def parameters_of_head(
        self, head: np.ndarray, params: Mapping[str, np.ndarray], spec: DataSpec
    ) -> dict[str, np.ndarray]:
        """Weights ``w``, means ``mu`` and sds ``sigma`` (..., n, output, component), in y units.

        ``head`` is the last layer's raw output (..., n, head); ``params`` gives the
        noise form's global ``weights``, ``loc`` and ``sigma`` per draw.
        """
        y_loc, y_scale = np.asarray(spec.y_loc), np.asarray(spec.y_scale)
        K = self.n_components
        if self.form == "noise":
            f = y_loc + y_scale * head  # (..., n, D)
            means = f[..., None] + np.asarray(params["loc"])[..., None, :, :]
            w = np.broadcast_to(np.asarray(params["weights"])[..., None, :, :], means.shape)
            s = np.broadcast_to(np.asarray(params["sigma"])[..., None, :, :], means.shape)
            return {"w": w, "mu": means, "sigma": s}
        head = head.reshape(*head.shape[:-1], spec.n_outputs, len(HEAD_KINDS), K)
        w = special.softmax(head[..., 0, :], axis=-1)
        means = y_loc[:, None] + y_scale[:, None] * head[..., 1, :]
        s = y_scale[:, None] * (np.logaddexp(0.0, head[..., 2, :]) + SCALE_FLOOR)
        return {"w": w, "mu": means, "sigma": s}

    def mean_of_head(
        self, head: np.ndarray, params: Mapping[str, np.ndarray], spec: DataSpec
    ) -> np.ndarray:
        """Return the predictive mean E[y | x] (..., n, output) from the raw last layer."""
        mixture = self.parameters_of_head(head, params, spec)
        return (mixture["w"] * mixture["mu"]).sum(axis=-1)

    def forward(
        self, params: Mapping[str, np.ndarray], X: np.ndarray, spec: DataSpec
    ) -> np.ndarray:
        """Compute the predictive mean E[y | x] for a batch of draws, (..., n, output)."""
        head = mlp_forward(params, X, activation=self.activation, spec=spec, raw=True)
        return self.mean_of_head(head, params, spec)


def noise_locations(weights: Any, n_outputs: int, n_components: int, *, ordered: bool) -> Any:
    """Component locations of the noise form, centred so that Σ_k π_k loc_k = 0.

    In standardised units of y: free locations ``loc_raw`` ~ Normal(0, 1)
    (ordered by a transform if asked), minus their weighted mean. Must run
    inside the model context.
    """
    D, K = n_outputs, n_components
    if K == 1:
        return pt.zeros((D, 1))
    extra = {"transform": pm.distributions.transforms.Ordered()} if ordered else {}
    raw = pm.Normal(
        "loc_raw",
        0.0,
        1.0,
        shape=(D, K),
        initval=np.tile(np.linspace(-0.5, 0.5, K), (D, 1)),
        **extra,
    )
    return raw - (weights * raw).sum(axis=-1, keepdims=True)
