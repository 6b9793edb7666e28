"""OrderedMLP: constraints by PyMC transforms remove exactly the hidden-unit symmetries."""

import itertools

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from bnncat import data
from bnncat import identifiability as ident
from bnncat.cli import main
from bnncat.models import MLP, OrderedMLP, load, predict, save
from bnncat.models.mlp import weight_names

TINY = {"draws": 60, "tune": 60, "chains": 2, "progressbar": False}


@pytest.mark.parametrize("positive", [True, False])
def test_ordered_transform_round_trip_and_log_jacobian_against_autodiff(positive):
    transform = pm.distributions.transforms.Ordered(positive=positive)
    rng = np.random.default_rng(0)
    x = np.cumsum(np.abs(rng.normal(size=5)) + 0.1) - (0 if positive else 2.0)
    value = pt.dvector("value")
    forward = pytensor.function([value], transform.forward(value))
    backward = pytensor.function([value], transform.backward(value))
    z = forward(x)
    np.testing.assert_allclose(backward(z), x, rtol=1e-12)
    jac = pytensor.function([value], pytensor.gradient.jacobian(transform.backward(value), value))
    log_det = pytensor.function([value], transform.log_jac_det(value))
    np.testing.assert_allclose(log_det(z), np.log(abs(np.linalg.det(jac(z)))), rtol=1e-10)


def _params(net, rng, n_outputs=1):
    widths = [2, *net.hidden, n_outputs]
    return {
        name: rng.normal(size=shape)
        for (w, b), fi, fo in zip(
            weight_names(net.n_hidden_layers), widths[:-1], widths[1:], strict=True
        )
        for name, shape in ((w, (fi, fo)), (b, (fo,)))
    }


@pytest.mark.parametrize("hidden", [(1,), (3,), (2, 2), (3, 2), (2, 2, 2)])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("order_by", ["output", "bias"])
@pytest.mark.parametrize("sign_by", ["input", "bias"])
def test_each_orbit_meets_the_constrained_region_exactly_once(
    hidden, activation, n_outputs, order_by, sign_by
):
    net = OrderedMLP(hidden, activation=activation, order_by=order_by, sign_by=sign_by)
    params = _params(net, np.random.default_rng(len(hidden) + n_outputs), n_outputs)
    flips = net.sign_flips
    per_layer = [
        [
            (np.array(p), None if not flips else np.array(s))
            for p in itertools.permutations(range(h))
            for s in (itertools.product([-1, 1], repeat=h) if flips else [None])
        ]
        for h in hidden
    ]
    inside = 0
    for element in itertools.product(*per_layer):
        moved = ident.apply_group_element(
            params, [e[0] for e in element], [e[1] for e in element] if flips else None, activation
        )
        inside += bool(net.in_constrained_region(moved))
    assert inside == 1
    assert len(list(itertools.product(*per_layer))) == ident.symmetry_size(net)


def test_variables_dims_and_valid_initial_point():
    ds = data.load("sine", n=20, seed=1)
    ordered = pm.distributions.transforms.Ordered
    model = OrderedMLP((4, 3)).build(ds.X, ds.y)  # default: every layer keyed on its biases
    assert all(isinstance(model.rvs_to_transforms[model[b]], ordered) for b in ("b1", "b2"))
    assert model.rvs_to_transforms[model["b2"]].positive
    assert model.named_vars_to_dims["W_out"] == ("hidden2", "output")
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    model = OrderedMLP((4, 3), sign_by="input").build(ds.X, ds.y)
    assert not model.rvs_to_transforms[model["b2"]].positive  # signs by the first inputs
    assert model.named_vars_to_dims["W1_lead"] == ("hidden1",)  # one feature: no W1_rest
    assert model.named_vars_to_dims["W2_lead"] == ("hidden2",)
    assert model["W2_rest"].type.shape == (3, 3)
    assert model.named_vars_to_dims["W2"] == ("hidden1", "hidden2")
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    model = OrderedMLP((4, 3), order_by="output").build(ds.X, ds.y)
    assert model.named_vars_to_dims["W_out"] == ("hidden2", "output")
    assert model.named_vars_to_dims["W_out_lead"] == ("hidden2",)
    assert isinstance(model.rvs_to_transforms[model["b1"]], ordered)
    assert model.rvs_to_transforms[model["b2"]] is None  # the last layer is keyed on W_out
    assert np.isfinite(model.compile_logp()(model.initial_point()))


@pytest.fixture(scope="module")
def ordered_fit():
    ds = data.load("sine", n=40, seed=3)
    net = OrderedMLP((4,))
    return net, ds, net.fit(ds.X, ds.y, random_seed=2, **TINY)


def test_every_nuts_draw_satisfies_the_constraints(ordered_fit):
    net, ds, idata = ordered_fit
    post = idata["posterior"]
    assert net.in_constrained_region({k: post[k].values for k in post.data_vars}).all()
    assert post["W_out"].dims == ("chain", "draw", "hidden1", "output")


def test_every_advi_draw_satisfies_the_constraints():
    ds = data.load("sine", n=40, seed=3)
    net = OrderedMLP((3, 3), activation="sigmoid")
    idata = net.fit(
        ds.X, ds.y, method="advi", draws=200, advi_iterations=500, random_seed=1, progressbar=False
    )
    post = idata["posterior"]
    assert net.in_constrained_region({k: post[k].values for k in post.data_vars}).all()


@pytest.mark.parametrize(
    ("order_by", "sign_by"), [("output", "input"), ("bias", "input"), ("bias", "bias")]
)
def test_ordered_draws_are_already_canonical(order_by, sign_by):
    ds = data.load("sine", n=40, seed=3)
    net = OrderedMLP((4, 2), order_by=order_by, sign_by=sign_by)
    idata = net.fit(ds.X, ds.y, random_seed=2, **TINY)
    post = idata["posterior"]
    assert net.in_constrained_region({k: post[k].values for k in post.data_vars}).all()
    labels = ident.canonicalize(idata, method="sort")["relabelling"]
    for layer, width in ((1, 4), (2, 2)):
        assert (labels[f"perm_hidden{layer}"].values == np.arange(width)).all()
        assert (labels[f"sign_hidden{layer}"].values == 1).all()


def test_order_by_must_be_known():
    with pytest.raises(ValueError, match="order_by='weights' is not known"):
        OrderedMLP((3,), order_by="weights")


def test_predict_save_load_round_trip(ordered_fit, tmp_path):
    net, ds, idata = ordered_fit
    back = load(save(idata, tmp_path / "o.nc"), net=net)
    pred = predict(back, np.linspace(-3, 3, 37)[:, None])["predictions"]
    assert pred["mu"].shape == (2, 60, 37, 1)
    with pytest.raises(ValueError, match="holds a OrderedMLP fit, not a MLP"):
        load(tmp_path / "o.nc", net=MLP((4,)))


def test_cli_fits_the_ordered_model(tmp_path):
    out = tmp_path / "res"
    assert (
        main(
            [
                "fit",
                "--model",
                "ordered-mlp",
                "--data",
                "mcycle",
                "--hidden",
                "3",
                "--draws",
                "40",
                "--tune",
                "40",
                "--chains",
                "2",
                "--out",
                str(out),
                "--no-progress",
                "--no-figures",
            ]
        )
        == 0
    )
    assert "OrderedMLP" in load(out / "fit.nc").attrs["bnncat_model"]


@pytest.mark.parametrize("sign_by", ["bias", "input"])
def test_advi_from_the_map_does_not_start_with_merged_units(sign_by):
    # find_MAP ignores the transform's Jacobian, so it may push two ordered biases
    # together (log-increment -> -inf); ADVI started there stayed with merged units
    sine = data.load("sine", n=40, seed=2)
    kwargs = {"method": "advi", "draws": 20, "advi_iterations": 300, "random_seed": 5}
    idata = OrderedMLP((3,), sign_by=sign_by).fit(sine.X, sine.y, progressbar=False, **kwargs)
    b = idata["posterior"]["b1"].values
    # what fixes the signs stays off its boundary too: the biases, or the first weights
    sign_key = b if sign_by == "bias" else idata["posterior"]["W1"].values[..., 0, :]
    assert (np.diff(b, axis=-1) > 1e-3).all() and (sign_key > 1e-3).all()


def test_sign_by_must_be_known():
    with pytest.raises(ValueError, match="sign_by='weights' is not known"):
        OrderedMLP((3,), sign_by="weights")


def test_a_negative_first_incoming_weight_leaves_the_region():
    net = OrderedMLP((2,), sign_by="input")
    p = {"W1": np.array([[0.5, 1.0]]), "b1": np.array([-0.3, 0.2]), "W_out": np.ones((2, 1))}
    assert net.in_constrained_region(p)  # ordered biases may be negative with sign_by="input"
    p["W1"] = np.array([[0.5, -1.0]])
    assert not net.in_constrained_region(p)
