"""The plain MLP Bayesian neural network: builder, NumPy forward pass and class.

Parameter names and dims follow DESIGN.md: hidden layer ``l`` has ``W{l}``
(``feature`` or ``hidden{l-1}``, ``hidden{l}``) and ``b{l}`` (``hidden{l}``);
the output layer has ``W_out`` (``hidden{L}``, ``output``) and ``b_out``
(``output``); ``mu`` (``obs``, ``output``) is the network output in the units
of ``y`` (logits for classification).
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.pytensorf import smarttypeX

from bnncat.models.activations import ACTIVATIONS
from bnncat.models.attrs import register_model
from bnncat.models.data_spec import DataSpec
from bnncat.models.integrated_output import add_marginal_likelihood
from bnncat.models.likelihoods import LIKELIHOODS, Likelihood
from bnncat.models.validation import (
    check_choice,
    check_hidden,
    check_labels,
    check_positive_float,
    check_positive_int,
    check_regression_y,
    check_X,
)

PRIORS = ("fixed", "lecun", "hierarchical")
#: Whether NUTS samples the output layer or it is integrated out (``MLP.output_layer``).
OUTPUT_LAYERS = ("sampled", "integrated")
#: Name of the last layer's raw output in the PyMC graph (not a stored variable).
NET_OUT = "net_out"
#: Default scale of the weight prior (see the ``prior_scale`` option of :class:`MLP`).
DEFAULT_PRIOR_SCALE = 2.0


def weight_names(n_hidden_layers: int) -> list[tuple[str, str]]:
    """Names of the (weight, bias) pair of every layer, output layer last."""
    return [(f"W{i}", f"b{i}") for i in range(1, n_hidden_layers + 1)] + [("W_out", "b_out")]


@register_model
@dataclass(frozen=True)
class MLP:
    """A fully connected Bayesian neural network.

    Parameters
    ----------
    hidden : sequence of int
        Width of each hidden layer, e.g. ``(8,)`` or ``(16, 16)``.
    activation : str
        One of ``tanh``, ``sin``, ``arctan``, ``identity``, ``relu``,
        ``sigmoid``, ``softplus``, ``gelu``.
    likelihood : str
        ``normal`` (learned noise scale per output), ``studentt`` (plus
        learned degrees of freedom ``nu``), ``bernoulli`` (labels 0/1) or
        ``categorical`` (labels 0..K-1).
    prior : str
        Scale rule of the Gaussian weight priors: ``fixed`` (sd =
        ``prior_scale``), ``lecun`` (sd = ``prior_scale / sqrt(fan_in)``) or
        ``hierarchical`` (a learned sd per layer, ``W{l}_sd ~
        HalfNormal(prior_scale / sqrt(fan_in))``).
    prior_scale : float
        Scale of the weight prior, see ``prior``. The default 2 (with
        ``lecun``: sd = 2 / sqrt(fan_in)) was chosen by measurement across
        NUTS, mean-field and full-rank ADVI (README, "Choice of default
        prior"): at 1, ADVI's optimum underfits (make_moons 2x5: accuracy
        0.89 in 2 of 3 seeds against NUTS's 0.97).
    bias_scale : float
        Standard deviation of the Normal(0, ·) prior on every bias.
    standardize : bool
        Feed the network standardised inputs and, for regression, map its
        output back to the units of ``y``. Predictions are always in the
        original units.
    n_classes : int, optional
        Number of classes for ``categorical``; inferred as ``max(y) + 1`` when
        omitted.
    layer_prior_scales : sequence of float, optional
        The sd of each layer's weight prior, output layer last, in place of
        ``prior`` and ``prior_scale`` (what Laplace's evidence tuning sets).
    noise_sd : float, optional
        A fixed noise sd of the ``normal`` likelihood, in the units of ``y``,
        instead of a learned ``sigma`` (also set by Laplace's evidence tuning).
    output_layer : {"sampled", "integrated"}
        ``"integrated"`` (``normal`` likelihood, fitted by NUTS): the sampler
        sees the likelihood with the output weights and bias integrated out
        (they are conjugate given the hidden layers and sigma), and exact draws
        of them from their conditional are added afterwards; the posterior is
        the plain model's, without its output-layer funnels (see
        :mod:`bnncat.models.integrated_output`).

    Examples
    --------
    >>> from bnncat.models import MLP
    >>> net = MLP(hidden=(8,), activation="tanh", likelihood="normal")
    >>> net.n_hidden_layers
    1
    """

    hidden: tuple[int, ...] = (8,)
    activation: str = field(default="tanh", kw_only=True)
    likelihood: str = field(default="normal", kw_only=True)
    prior: Literal["fixed", "lecun", "hierarchical"] = field(default="lecun", kw_only=True)
    prior_scale: float = field(default=DEFAULT_PRIOR_SCALE, kw_only=True)
    bias_scale: float = field(default=1.0, kw_only=True)
    standardize: bool = field(default=True, kw_only=True)
    n_classes: int | None = field(default=None, kw_only=True)
    layer_prior_scales: tuple[float, ...] | None = field(default=None, kw_only=True)
    noise_sd: float | None = field(default=None, kw_only=True)
    output_layer: Literal["sampled", "integrated"] = field(default="sampled", kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        check_choice(self.activation, ACTIVATIONS, "activation")
        check_choice(self.likelihood, LIKELIHOODS, "likelihood")
        check_choice(self.prior, PRIORS, "prior")
        object.__setattr__(
            self, "prior_scale", check_positive_float(self.prior_scale, "prior_scale")
        )
        object.__setattr__(self, "bias_scale", check_positive_float(self.bias_scale, "bias_scale"))
        if not isinstance(self.standardize, bool):
            raise TypeError(f"standardize must be True or False; got {self.standardize!r}")
        if self.n_classes is not None:
            if self.likelihood != "categorical":
                raise ValueError(
                    f"n_classes is only used with likelihood='categorical', not {self.likelihood!r}"
                )
            object.__setattr__(
                self, "n_classes", check_positive_int(self.n_classes, "n_classes", minimum=2)
            )
        self._check_fixed_scales()
        check_choice(self.output_layer, OUTPUT_LAYERS, "output_layer")
        # the marginal likelihood stands in for MLP.add_likelihood's Gaussian on the output
        if self.output_layer == "integrated" and (
            self.likelihood != "normal" or type(self).add_likelihood is not MLP.add_likelihood
        ):
            raise ValueError(
                "output_layer='integrated' needs a Gaussian likelihood on the network output "
                f"(likelihood='normal' of an MLP); got likelihood={self.likelihood!r} "
                f"in {type(self).__name__}"
            )

    def _check_fixed_scales(self) -> None:
        """Validate ``layer_prior_scales`` (one per layer) and ``noise_sd`` (normal only)."""
        if self.layer_prior_scales is not None:
            scales = self.layer_prior_scales
            if isinstance(scales, str) or not isinstance(scales, Sequence):
                raise TypeError(f"layer_prior_scales must be a sequence of sds; got {scales!r}")
            if len(scales) != self.n_hidden_layers + 1:
                raise ValueError(
                    f"layer_prior_scales needs one sd per layer ({self.n_hidden_layers + 1}, "
                    f"output layer last); got {len(scales)}"
                )
            if self.prior == "hierarchical":
                raise ValueError("layer_prior_scales fixes the sds a hierarchical prior learns")
            object.__setattr__(
                self,
                "layer_prior_scales",
                tuple(
                    check_positive_float(v, f"layer_prior_scales[{i}]")
                    for i, v in enumerate(scales)
                ),
            )
        if self.noise_sd is not None:
            if self.likelihood != "normal":
                raise ValueError(
                    f"noise_sd fixes the sd of likelihood='normal', not {self.likelihood!r}"
                )
            object.__setattr__(self, "noise_sd", check_positive_float(self.noise_sd, "noise_sd"))

    # -- configuration -------------------------------------------------------------------

    @property
    def n_hidden_layers(self) -> int:
        """Number of hidden layers L."""
        return len(self.hidden)

    @property
    def lik(self) -> Likelihood:
        """The likelihood object named by ``likelihood``."""
        return LIKELIHOODS[self.likelihood]

    def options(self) -> dict[str, Any]:
        """Builder options as plain JSON-able values (what a fit stores in attrs)."""
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        if self.layer_prior_scales is not None:
            out["layer_prior_scales"] = list(self.layer_prior_scales)
        return out

    # -- data ----------------------------------------------------------------------------

    def data_spec(self, X: object, y: object) -> tuple[np.ndarray, np.ndarray, DataSpec]:
        """Validate ``X`` and ``y`` and derive the :class:`DataSpec` of this net.

        Returns the validated arrays and the spec. Raises ``ValueError`` or
        ``TypeError`` naming the argument on bad input.
        """
        X_arr = check_X(X, "X")
        if self.lik.task == "regression":
            y_arr = check_regression_y(y, X_arr.shape[0], "y")
            n_classes = None
        else:
            allowed = 2 if self.lik.binary else self.n_classes
            y_arr = check_labels(y, X_arr.shape[0], allowed, "y")
            n_classes = allowed or int(y_arr.max()) + 1
            if n_classes < 2:
                raise ValueError("y holds a single class (0): categorical needs at least two")
        spec = DataSpec.from_data(
            X,
            X_arr,
            y,
            y_arr,
            task=self.lik.task,
            n_classes=n_classes,
            binary=self.lik.binary,
            standardize=self.standardize,
        )
        return X_arr, y_arr, spec

    # -- model ---------------------------------------------------------------------------

    def build(self, X: object, y: object) -> pm.Model:
        """Build the PyMC model for data ``X`` (rows, features) and targets ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> from bnncat.models import MLP
        >>> X = np.linspace(-1, 1, 20)[:, None]
        >>> model = MLP(hidden=(4,)).build(X, np.sin(3 * X[:, 0]))
        >>> sorted(model.named_vars_to_dims["W1"])
        ['feature', 'hidden1']
        """
        X_arr, y_arr, spec = self.data_spec(X, y)
        return self.build_validated(X_arr, y_arr, spec)

    def build_validated(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        spec: DataSpec,
        *,
        batch_size: int | None = None,
        integrate_output: bool = False,
    ) -> pm.Model:
        """Build from already validated arrays and a spec; ``y=None`` gives the prediction model.

        ``batch_size`` gives the minibatch model that ADVI trains on, and
        ``integrate_output`` the model NUTS samples for ``output_layer="integrated"``
        (see :func:`build_mlp`).
        """
        return build_mlp(
            X, y, net=self, spec=spec, batch_size=batch_size, integrate_output=integrate_output
        )

    def layer_parameters(
        self, layer: int, fan_in: int, dims: tuple[str, str], spec: DataSpec
    ) -> tuple[Any, Any]:
        """Create the weights and bias of layer ``layer`` (0-based; the last is the output).

        Called inside the model context by :func:`build_mlp`; subclasses change
        the parameterisation here (see ``OrderedMLP``).
        """
        w_name, b_name = weight_names(self.n_hidden_layers)[layer]
        W = pm.Normal(w_name, 0.0, weight_prior_scale(self, w_name, fan_in), dims=dims)
        return W, pm.Normal(b_name, 0.0, self.bias_scale, dims=dims[1])

    #: Dim of the network's last layer: the outputs themselves for a plain MLP.
    head_dim = "output"
    #: Whether the draws already lie in one canonical copy (constraints while sampling).
    samples_canonically = False

    def relabel_rule(self) -> tuple[str, str]:
        """Which key orders hidden units and which fixes their signs when relabelling.

        ``("bias", "bias")`` for a plain MLP: see :func:`bnncat.identifiability.canonicalize`.
        """
        return "bias", "bias"

    def head_size(self, spec: DataSpec) -> int:
        """Width of the network's last layer (``head_dim``)."""
        return spec.n_outputs

    def head_label(self) -> str:
        """Describe what the last layer models, in a few words for titles."""
        return self.likelihood

    def extra_coords(self, spec: DataSpec) -> dict[str, Sequence]:
        """Coords beyond feature, hidden{l} and output (none for a plain MLP)."""
        return {}

    def add_likelihood(self, net_out: Any, y: np.ndarray | None, spec: DataSpec) -> None:
        """Turn the network output (obs, head_dim) into ``mu`` and the observed ``y``."""
        mu = pm.Deterministic(
            "mu",
            np.asarray(spec.y_loc) + np.asarray(spec.y_scale) * net_out,
            dims=("obs", "output"),
        )
        if self.noise_sd is None:
            self.lik.add(mu, y, spec)
            return
        sigma = np.full(spec.n_outputs, self.noise_sd)
        sigma = pm.Deterministic("sigma", pt.as_tensor(sigma), dims="output")
        self.lik.observe({"mu": mu, "sigma": sigma}, y, ("obs", "output"))

    def forward(
        self, params: Mapping[str, np.ndarray], X: np.ndarray, spec: DataSpec
    ) -> np.ndarray:
        """NumPy forward pass; see :func:`mlp_forward`."""
        return mlp_forward(params, X, activation=self.activation, spec=spec)

    def observation_parameters(
        self, params: Mapping[str, np.ndarray], X: np.ndarray, spec: DataSpec
    ) -> dict[str, np.ndarray]:
        """Arguments of ``self.lik.dist`` per draw at the inputs ``X``, in y units.

        Leading axes are those of the draws, then rows (and outputs); the
        likelihood derives log densities, CDFs and predictive draws from them.
        """
        return self.parameters_of_head(
            mlp_forward(params, X, activation=self.activation, spec=spec, raw=True), params, spec
        )

    def parameters_of_head(
        self, head: np.ndarray, params: Mapping[str, np.ndarray], spec: DataSpec
    ) -> dict[str, np.ndarray]:
        """Arguments of ``self.lik.dist`` from the last layer's raw output ``head`` (..., n, head).

        ``params`` gives the likelihood's own parameters (``sigma``, ...) per draw.
        """
        return self.lik.parameters(self.mean_of_head(head, params, spec), params)

    def mean_of_head(
        self, head: np.ndarray, params: Mapping[str, np.ndarray], spec: DataSpec
    ) -> np.ndarray:
        """Return the model's ``mu`` from the last layer's raw output (..., n, head)."""
        return np.asarray(spec.y_loc) + np.asarray(spec.y_scale) * head

    def component_labels(
        self, params: Mapping[str, np.ndarray], X: np.ndarray | None, spec: DataSpec | None
    ) -> np.ndarray | None:
        """Per-draw order of likelihood components to relabel by (None: no components)."""
        return None

    def apply_component_labels(
        self, params: Mapping[str, np.ndarray], perm: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Permute the likelihood's components (a plain MLP has none: unchanged)."""
        return dict(params)

    def free_pieces(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Free variables sampled in pieces of a stored variable, recomputed from it.

        After relabelling changes e.g. ``W_out``, the pieces the sampler worked
        with (``OrderedMLP``'s ``W_out_lead``) must follow. None for a plain MLP.
        """
        return {}

    def fit(self, X: object, y: object, **kwargs: Any) -> xr.DataTree:
        """Fit by any registered method; see :func:`bnncat.models.inference.fit` for the options.

        Examples
        --------
        >>> from bnncat import data
        >>> from bnncat.models import MLP
        >>> ds = data.load("mcycle")
        >>> idata = MLP(hidden=(8,)).fit(ds.X, ds.y, draws=500, random_seed=1)  # doctest: +SKIP
        """
        from bnncat.models.inference import fit

        return fit(self, X, y, **kwargs)

    def predict(self, idata: xr.DataTree, X_new: object, **kwargs: Any) -> xr.DataTree:
        """Posterior predictive at new rows; see :func:`bnncat.models.prediction.predict`."""
        from bnncat.models.prediction import predict

        return predict(idata, X_new, net=self, **kwargs)


class MinibatchModel(pm.Model):
    """A ``pm.Model`` whose observed variables all get ``total_size``.

    Every likelihood of the catalogue registers its ``y`` through
    ``register_rv``; adding ``total_size`` there scales the log-likelihood of a
    minibatch by ``total_size / batch_size`` for every model class alike.
    """

    def __init__(self, *args: Any, total_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total_size = total_size

    def register_rv(self, rv_var, name, *, observed=None, total_size=None, **kwargs):  # noqa: D102
        if observed is not None and total_size is None:
            total_size = self.total_size
        return super().register_rv(rv_var, name, observed=observed, total_size=total_size, **kwargs)


def build_mlp(
    X: np.ndarray,
    y: np.ndarray | None,
    *,
    net: MLP,
    spec: DataSpec,
    batch_size: int | None = None,
    integrate_output: bool = False,
) -> pm.Model:
    """Build the PyMC model of ``net`` from validated arrays (pure: no sampling).

    With ``y=None`` the model is the prediction model: the same graph, with
    ``y`` unobserved. With ``batch_size`` it is the minibatch model ADVI trains
    on: every evaluation sees ``batch_size`` random rows of ``(X, y)``
    (``pm.Minibatch``, dim ``obs`` of that length) and the likelihood is
    scaled to the ``n`` rows (``total_size``); its free variables are those of
    the full model, so an approximation fitted on it samples the full model.
    With ``integrate_output`` the output layer is integrated out of the likelihood
    of the observed ``y`` (:func:`~bnncat.models.integrated_output.add_marginal_likelihood`).
    """
    act = ACTIVATIONS[net.activation].tensor
    coords: dict[str, Sequence] = {"feature": list(spec.feature_names)}
    coords |= {f"hidden{i}": np.arange(h) for i, h in enumerate(net.hidden, 1)}
    coords["output"] = list(spec.output_names)
    coords |= net.extra_coords(spec)
    if batch_size is not None and y is None:
        raise ValueError("a minibatch model needs observed y")
    if batch_size is None:
        model = pm.Model(coords=coords)
    else:
        model = MinibatchModel(coords=coords | {"obs": np.arange(batch_size)}, total_size=len(X))
    with model:
        if batch_size is None:
            X_data = pm.Data("X", X, dims=("obs", "feature"))
        else:
            # in the dtypes PyMC would cast observed data to (int labels: intX): a cast
            # after the minibatch would no longer count as observed data
            X_data, y = pm.Minibatch(smarttypeX(X), smarttypeX(y), batch_size=batch_size)
        h = (X_data - np.asarray(spec.x_loc)) / np.asarray(spec.x_scale)
        in_dim, fan_in = "feature", spec.n_features
        for i, width in enumerate(net.hidden):
            W, b = net.layer_parameters(i, fan_in, (in_dim, f"hidden{i + 1}"), spec)
            h = act(h @ W + b)
            in_dim, fan_in = f"hidden{i + 1}", width
        if integrate_output:
            add_marginal_likelihood(net, h, fan_in, y, spec)
            return model
        W, b = net.layer_parameters(net.n_hidden_layers, fan_in, (in_dim, net.head_dim), spec)
        net_out = h @ W + b
        net_out.name = NET_OUT  # found by name where the network output is needed (Laplace)
        net.add_likelihood(net_out, y, spec)
    return model


def weight_prior_scale(net: MLP, name: str, fan_in: int):
    """Return the sd of a layer's Gaussian weight prior (a PyMC variable if hierarchical)."""
    if net.layer_prior_scales is not None:
        names = [w for w, _ in weight_names(net.n_hidden_layers)]
        return net.layer_prior_scales[names.index(name)]
    scale = net.prior_scale
    if net.prior in ("lecun", "hierarchical"):
        scale = scale / np.sqrt(fan_in)
    if net.prior == "hierarchical":
        # Centred: a per-layer sd informed by all of that layer's weights.
        scale = pm.HalfNormal(f"{name}_sd", sigma=scale)
    return scale


def mlp_forward(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    *,
    activation: str,
    spec: DataSpec,
    raw: bool = False,
) -> np.ndarray:
    """Network output ``mu`` for a batch of parameter draws, in NumPy.

    Parameters
    ----------
    params : mapping of str to ndarray
        ``W1``, ``b1``, ..., ``W_out``, ``b_out`` with any leading sample
        dims, e.g. ``W1`` of shape ``(chain, draw, n_features, H1)``.
    X : ndarray of shape (n, n_features)
        Inputs in original units.
    activation : str
        Activation name.
    spec : DataSpec
        Scaling constants of the fit.
    raw : bool
        Return the last layer's output as it is, without mapping it to the
        units of ``y`` (for heads that are not the mean, e.g. mixtures).

    Returns
    -------
    ndarray of shape (..., n, n_outputs)
        The same quantity as the PyMC model's ``mu``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnncat.models.data_spec import DataSpec
    >>> spec = DataSpec(("x",), ("y",), (0.0,), (1.0,), (0.0,), (1.0,))
    >>> p = {"W1": np.ones((1, 2)), "b1": np.zeros(2)}
    >>> p |= {"W_out": np.ones((2, 1)), "b_out": np.zeros(1)}
    >>> mlp_forward(p, np.zeros((3, 1)), activation="tanh", spec=spec).shape
    (3, 1)
    """
    h = hidden_activations(params, X, activation=activation, spec=spec)[-1]
    h = h @ np.asarray(params["W_out"]) + np.asarray(params["b_out"])[..., None, :]
    return h if raw else np.asarray(spec.y_loc) + np.asarray(spec.y_scale) * h


def hidden_activations(
    params: Mapping[str, np.ndarray], X: np.ndarray, *, activation: str, spec: DataSpec
) -> list[np.ndarray]:
    """Return the activations of every hidden layer, each (..., n, H_l), in NumPy.

    Same arguments as :func:`mlp_forward`; the last entry feeds the output layer.
    """
    act = ACTIVATIONS[activation].numpy
    n_layers = sum(1 for k in params if k[:1] == "W" and k[1:].isdigit())
    h = (np.asarray(X, dtype=np.float64) - np.asarray(spec.x_loc)) / np.asarray(spec.x_scale)
    out = []
    for w_name, b_name in weight_names(n_layers)[:-1]:
        h = act(h @ np.asarray(params[w_name]) + np.asarray(params[b_name])[..., None, :])
        out.append(h)
    return out
