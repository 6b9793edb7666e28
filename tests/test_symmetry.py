"""Structure tier of the identifiability layer: the group, its size, relabelling (no sampling)."""

import itertools
import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from bnncat import identifiability as ident
from bnncat.models import MLP, OrderedMLP, mlp_forward
from bnncat.models.activations import ACTIVATIONS, sign_flip
from bnncat.models.data_spec import DataSpec
from bnncat.models.mlp import weight_names

SYMMETRIC = ["tanh", "sin", "arctan", "sigmoid", "relu", "gelu", "softplus", "identity"]


def _spec(n_features, n_outputs=1):
    return DataSpec(
        tuple(f"x{i}" for i in range(n_features)),
        tuple(f"y{i}" for i in range(n_outputs)),
        (0.0,) * n_features,
        (1.0,) * n_features,
        (0.0,) * n_outputs,
        (1.0,) * n_outputs,
    )


def _params(net, n_features, rng, sample_shape=(), n_outputs=1):
    widths = [n_features, *net.hidden, n_outputs]
    out = {}
    for (w, b), fan_in, fan_out in zip(
        weight_names(net.n_hidden_layers), widths[:-1], widths[1:], strict=True
    ):
        out[w] = rng.normal(size=(*sample_shape, fan_in, fan_out))
        out[b] = rng.normal(size=(*sample_shape, fan_out))
    return out


def _idata(params, net):
    """Wrap parameter arrays of shape (chain, draw, ...) as a posterior DataTree."""
    post = xr.Dataset()
    prev = "feature"
    for i, (w, b) in enumerate(weight_names(net.n_hidden_layers)):
        dim = "output" if w == "W_out" else f"hidden{i + 1}"
        post[w] = (("chain", "draw", prev, dim), params[w])
        post[b] = (("chain", "draw", dim), params[b])
        prev = dim
    return xr.DataTree.from_dict({"posterior": post})


architectures = st.tuples(
    st.lists(st.integers(1, 8), min_size=1, max_size=3),
    st.sampled_from(SYMMETRIC),
    st.integers(1, 3),  # features
    st.integers(1, 2),  # outputs
    st.integers(0, 2**32 - 1),  # seed
)


@settings(max_examples=60, deadline=None)
@given(architectures)
def test_a_group_element_leaves_the_output_unchanged(arch):
    hidden, activation, p, o, seed = arch
    rng = np.random.default_rng(seed)
    net = MLP(tuple(hidden), activation=activation)
    params = _params(net, p, rng, (2, 3), o)
    perms, signs = ident.random_group_element(net, rng, (2, 3))
    moved = ident.apply_group_element(params, perms, signs, activation)
    X = rng.normal(size=(9, p))
    spec = _spec(p, o)
    before = mlp_forward(params, X, activation=activation, spec=spec)
    after = mlp_forward(moved, X, activation=activation, spec=spec)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-10)
    assert params["W1"] is not moved["W1"]


@settings(max_examples=60, deadline=None)
@given(architectures)
def test_sort_is_invariant_idempotent_and_keeps_predictions(arch):
    hidden, activation, p, o, seed = arch
    rng = np.random.default_rng(seed)
    net = MLP(tuple(hidden), activation=activation)
    params = _params(net, p, rng, (2, 4), o)
    perms, signs = ident.random_group_element(net, rng, (2, 4))
    moved = ident.apply_group_element(params, perms, signs, activation)
    canon = ident.canonicalize(_idata(params, net), net=net)["posterior"]
    canon_moved = ident.canonicalize(_idata(moved, net), net=net)["posterior"]
    twice = ident.canonicalize(xr.DataTree.from_dict({"posterior": canon.to_dataset()}), net=net)[
        "posterior"
    ]
    for name in params:
        np.testing.assert_allclose(canon_moved[name].values, canon[name].values, atol=1e-12)
        np.testing.assert_array_equal(twice[name].values, canon[name].values)
    X = rng.normal(size=(5, p))
    spec = _spec(p, o)
    relabelled = {k: canon[k].values for k in params}
    np.testing.assert_allclose(
        mlp_forward(relabelled, X, activation=activation, spec=spec),
        mlp_forward(params, X, activation=activation, spec=spec),
        atol=1e-10,
    )


@settings(max_examples=25, deadline=None)
@given(architectures)
def test_pivot_is_idempotent_and_keeps_predictions(arch):
    hidden, activation, p, o, seed = arch
    rng = np.random.default_rng(seed)
    net = MLP(tuple(hidden), activation=activation)
    params = _params(net, p, rng, (2, 5), o)
    canon = ident.canonicalize(_idata(params, net), net=net, method="pivot")
    again = ident.canonicalize(
        xr.DataTree.from_dict({"posterior": canon["posterior"].to_dataset()}),
        net=net,
        method="pivot",
    )
    X = rng.normal(size=(5, p))
    spec = _spec(p, o)
    relabelled = {k: canon["posterior"][k].values for k in params}
    np.testing.assert_allclose(
        mlp_forward(relabelled, X, activation=activation, spec=spec),
        mlp_forward(params, X, activation=activation, spec=spec),
        atol=1e-10,
    )
    for name in params:
        np.testing.assert_allclose(again["posterior"][name].values, relabelled[name], atol=1e-12)


def test_recorded_labels_reproduce_the_relabelled_draws():
    rng = np.random.default_rng(3)
    net = MLP((4, 3), activation="tanh")
    params = _params(net, 2, rng, (2, 6))
    for method in ("sort", "pivot"):
        canon = ident.canonicalize(_idata(params, net), net=net, method=method)
        labels = canon["relabelling"]
        perms = [labels[f"perm_hidden{i}"].values for i in (1, 2)]
        signs = [labels[f"sign_hidden{i}"].values for i in (1, 2)]
        assert labels["perm_hidden1"].dims == ("chain", "draw", "hidden1")
        assert set(np.unique(signs[0])) <= {-1, 1}
        redo = ident.apply_group_element(params, perms, signs, "tanh")
        for name in params:
            np.testing.assert_allclose(redo[name], canon["posterior"][name].values, atol=1e-12)
        # every recorded permutation is a permutation
        assert (np.sort(perms[0], axis=-1) == np.arange(4)).all()


@pytest.mark.parametrize("order_by", ["bias", "output"])
@pytest.mark.parametrize("sign_by", ["bias", "input"])
def test_sort_canonical_form_satisfies_the_ordered_mlp_constraints(order_by, sign_by):
    rng = np.random.default_rng(0)
    net = MLP((5, 4), activation="tanh")
    canon = ident.canonicalize(
        _idata(_params(net, 2, rng, (3, 7)), net=net), net=net, order_by=order_by, sign_by=sign_by
    )["posterior"]
    keys = [canon["b1"].values, canon["b2"].values]
    sign_keys = [canon["W1"].values[..., 0, :], canon["W2"].values[..., 0, :]]
    if order_by == "output":
        keys[1] = sign_keys[1] = canon["W_out"].values[..., 0]
    if sign_by == "bias":
        sign_keys = keys
    for key, sign_key in zip(keys, sign_keys, strict=True):  # ordered, signs fixed
        assert (sign_key > 0).all() and (np.diff(key, axis=-1) > 0).all()
    ordered = OrderedMLP((5, 4), order_by=order_by, sign_by=sign_by)
    assert ordered.in_constrained_region({k: canon[k].values for k in canon.data_vars}).all()


def test_the_input_is_left_untouched():
    rng = np.random.default_rng(0)
    net = MLP((3,))
    idata = _idata(_params(net, 1, rng, (2, 4)), net)
    before = idata["posterior"].to_dataset().copy(deep=True)
    ident.canonicalize(idata, net=net, method="pivot")
    xr.testing.assert_identical(idata["posterior"].to_dataset(), before)
    assert "relabelling" not in idata.children


def _brute_force_orbit(net, params):
    """Distinct parameter vectors over every element of the group."""
    seen = set()
    flips = sign_flip(net.activation) is not None
    per_layer = []
    for h in net.hidden:
        signs = list(itertools.product([-1, 1], repeat=h)) if flips else [None]
        per_layer.append(
            [
                (np.array(p), None if s is None else np.array(s))
                for p in itertools.permutations(range(h))
                for s in signs
            ]
        )
    for element in itertools.product(*per_layer):
        perms = [e[0] for e in element]
        signs = None if not flips else [e[1] for e in element]
        moved = ident.apply_group_element(params, perms, signs, net.activation)
        seen.add(tuple(np.round(np.concatenate([moved[k].ravel() for k in sorted(moved)]), 9)))
    return len(seen)


@pytest.mark.parametrize("hidden", [(1,), (2,), (3,), (2, 2), (3, 2), (2, 3)])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_symmetry_size_equals_a_brute_force_count(hidden, activation):
    net = MLP(hidden, activation=activation)
    params = _params(net, 2, np.random.default_rng(sum(hidden)))
    assert _brute_force_orbit(net, params) == ident.symmetry_size(net)


def test_symmetry_sizes_and_their_log():
    assert ident.symmetry_size(MLP((8,))) == math.factorial(8) * 2**8 == 10321920
    assert ident.symmetry_size(MLP((8,), activation="gelu")) == math.factorial(8)
    big = MLP((64, 64))
    assert ident.log10_symmetry_size(big) == pytest.approx(math.log10(ident.symmetry_size(big)))
    assert ident.log10_symmetry_size(MLP((15,))) > 12  # the >10^12 of DESIGN.md


def test_which_activations_have_a_sign_flip():
    for name, act in ACTIVATIONS.items():
        assert ident.has_sign_flip(name) == (act.odd or name == "sigmoid")
    info = ident.describe_symmetries(MLP((4, 2), activation="relu"))
    assert info["sign_flip"] is None and "rescaling" in info["continuous"]
    assert [layer["permutations"] for layer in info["layers"]] == [24, 2]


def test_signs_on_an_activation_without_flips_are_refused():
    net = MLP((2,), activation="relu")
    params = _params(net, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="activation='relu' has no sign-flip symmetry"):
        ident.apply_group_element(params, [np.array([1, 0])], [np.array([-1, 1])], "relu")


# -- bad input ---------------------------------------------------------------------------


def test_canonicalize_rejects_bad_input():
    rng = np.random.default_rng(0)
    net = MLP((3,))
    idata = _idata(_params(net, 1, rng, (2, 4)), net)
    with pytest.raises(
        ValueError, match="no bnncat configuration.*canonicalize\\(idata, net=net\\)"
    ):
        ident.canonicalize(idata)
    with pytest.raises(ValueError, match="method='hungarian' is not known"):
        ident.canonicalize(idata, net=net, method="hungarian")
    with pytest.raises(ValueError, match="no posterior group"):
        ident.canonicalize(xr.DataTree(), net=net)
    with pytest.raises(TypeError, match="must be an xarray.DataTree"):
        ident.canonicalize({"posterior": 1}, net=net)
    with pytest.raises(ValueError, match="the posterior has no 'W2'"):
        ident.canonicalize(idata, net=MLP((3, 2)))
    with pytest.raises(ValueError, match=r"hidden widths \(3,\) are not net.hidden=\(4,\)"):
        ident.canonicalize(idata, net=MLP((4,)))
    with pytest.raises(TypeError, match="relabels MLP-family nets"):
        ident.canonicalize(idata, net="mlp")
