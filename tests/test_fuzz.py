"""Fuzzed bad input: every generated case works or is a ValueError/TypeError naming its argument.

Each strategy starts from a valid input and applies one mutation (NaN, inf, a wrong
shape or dtype, object or categorical columns, empty frames, mismatched lengths,
extreme magnitudes, wrong option types and values). A mutation that must be refused
has to be refused before any sampling: the methods' model preparation is replaced
by one that validates as before and then stops (:class:`ReachedSampler`), so a bad
input that got through would show up as that, not as a slow fit. The cases tried
are counted per target, and the last test checks their total.
"""

import collections
import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnncat import diagnose
from bnncat import identifiability as ident
from bnncat.cli import main
from bnncat.models import MLP, fit, load, predict, predict_summary
from bnncat.models.inference import problem as problem_module
from bnncat.models.inference.registry import METHODS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

#: Cases per target; the slow tier runs all of them (the total is checked last).
CASES = int(os.environ.get("BNNCAT_FUZZ_CASES", "200"))
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases in every run: a failure can be reproduced
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRIED: collections.Counter = collections.Counter()


class ReachedSampler(Exception):
    """Raised where a method would start compiling and sampling: the input got through."""


@pytest.fixture
def no_sampling(monkeypatch):
    """Stop every method right after its inputs are validated and its model is built."""
    real = problem_module.prepare_problem

    def validate_then_stop(*args, **kwargs):
        problem = real(*args, **kwargs)
        spec = problem.spec  # what got through is finite, with usable scales
        scales = np.array([*spec.x_scale, *spec.y_scale])
        assert np.isfinite([*spec.x_loc, *spec.y_loc]).all() and np.isfinite(scales).all()
        assert (scales > 0).all() and np.isfinite(problem.X).all()
        raise ReachedSampler

    for entry in {e.fit.__module__ for e in METHODS.values()}:
        module = __import__(entry, fromlist=["_"])
        if hasattr(module, "prepare_problem"):
            monkeypatch.setattr(module, "prepare_problem", validate_then_stop)
    monkeypatch.setattr(problem_module, "prepare_problem", validate_then_stop)


def _outcome(call, argument: str) -> str:
    """Run ``call``: 'works', or 'refused' with a message that names ``argument``."""
    try:
        call()
    except ReachedSampler:
        return "works"
    except (ValueError, TypeError) as err:
        assert argument in str(err), f"the error does not name {argument!r}: {err}"
        return "refused"
    return "works"


# -- data --------------------------------------------------------------------------------------

BAD_VALUES = [np.nan, np.inf, -np.inf]


def _mutated_X(draw, X: np.ndarray):
    """One mutation of the inputs, and whether it must be refused."""
    kind = draw(
        st.sampled_from(
            [
                "nan",
                "inf",
                "1-D",
                "3-D",
                "empty rows",
                "no columns",
                "strings",
                "complex",
                "object column",
                "categorical column",
                "ragged list",
                "None",
                "huge",
                "tiny",
                "bool",
                "int",
                "float32",
                "constant column",
            ]
        )
    )
    X = X.copy()
    i, j = draw(st.integers(0, X.shape[0] - 1)), draw(st.integers(0, X.shape[1] - 1))
    if kind in ("nan", "inf"):
        X[i, j] = draw(st.sampled_from(BAD_VALUES if kind == "inf" else [np.nan]))
        return X, True
    scale = draw(st.sampled_from([1e6, 1e150, 1e300]))
    labels = ["u", "v", "w"] * len(X)
    mutations = {  # each built only when drawn
        "1-D": lambda: (X[:, 0], True),
        "3-D": lambda: (X[:, :, None], True),
        "empty rows": lambda: (X[:0], True),
        "no columns": lambda: (X[:, :0], True),
        "strings": lambda: (X.astype(str), False),  # numbers as text: NumPy may read them
        "complex": lambda: (X + 1j, True),
        "object column": lambda: (pd.DataFrame(X).assign(extra=["a"] * len(X)), True),
        "categorical column": lambda: (
            pd.DataFrame(X).assign(extra=pd.Categorical(labels[: len(X)])),
            True,
        ),
        "ragged list": lambda: ([list(r) for r in X[:-1]] + [list(X[-1][:-1])], True),
        "None": lambda: (None, True),
        "huge": lambda: (X * scale, False),
        "tiny": lambda: (X / scale, False),
        "bool": lambda: (X > 0, False),
        "int": lambda: (np.round(X * 10).astype(int), False),
        "float32": lambda: (X.astype(np.float32), False),
        "constant column": lambda: (np.column_stack([X, np.full(len(X), 3.0)]), False),
    }
    return mutations[kind]()


def _mutated_y(draw, y: np.ndarray):
    """One mutation of regression targets, and whether it must be refused."""
    kind = draw(
        st.sampled_from(
            ["nan", "inf", "short", "long", "3-D", "empty", "strings", "object", "None", "huge"]
        )
    )
    y = y.copy()
    first = np.arange(len(y)) == 0
    mutations = {  # each built only when drawn
        "nan": lambda: (np.where(first, np.nan, y), True),
        "inf": lambda: (np.where(first, np.inf, y), True),
        "short": lambda: (y[:-1], True),
        "long": lambda: (np.append(y, 1.0), True),
        "3-D": lambda: (y[:, None, None], True),
        "empty": lambda: (y[:0], True),
        "strings": lambda: (np.array(["a"] * len(y)), True),
        "object": lambda: (pd.Series(["x"] * len(y), dtype=object), True),
        "None": lambda: (None, True),
        "huge": lambda: (y * 1e200, False),
    }
    return mutations[kind]()


@st.composite
def bad_data(draw):
    n = draw(st.integers(4, 12))
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    if draw(st.booleans()):
        X, must_fail = _mutated_X(draw, X)
        return X, y, "X", must_fail
    y, must_fail = _mutated_y(draw, y)
    return X, y, "y", must_fail


@FUZZ
@given(case=bad_data(), method=st.sampled_from(["nuts", "advi", "laplace", "ensemble"]))
def test_fit_refuses_bad_data_before_sampling(no_sampling, case, method):
    X, y, argument, must_fail = case
    outcome = _outcome(lambda: fit(MLP((2,)), X, y, method=method), argument)
    TRIED["fit data"] += 1
    assert outcome == "refused" or not must_fail, f"bad {argument} reached the sampler"


@FUZZ
@given(
    y=st.one_of(
        st.lists(st.sampled_from([0, 1, 2, -1, 7, 0.5, np.nan]), min_size=6, max_size=6),
        st.lists(st.sampled_from(["a", "b"]), min_size=6, max_size=6),
    ),
    likelihood=st.sampled_from(["bernoulli", "categorical"]),
)
def test_fit_refuses_bad_class_labels_before_sampling(no_sampling, y, likelihood):
    X = np.linspace(-1, 1, 12).reshape(6, 2)
    labels = np.asarray(y)
    # labels are the integers 0..K-1 (K from the largest, some may be unseen); two for Bernoulli
    valid = labels.dtype.kind in "if" and bool((labels >= 0).all() and (labels % 1 == 0).all())
    valid = valid and (likelihood == "categorical" or bool((labels <= 1).all()))
    outcome = _outcome(lambda: fit(MLP((2,), likelihood=likelihood), X, y), "y")
    TRIED["fit labels"] += 1
    assert outcome == "refused" or valid, f"labels {y} reached the sampler"


# -- options -----------------------------------------------------------------------------------

ODD_VALUES = st.sampled_from(
    [-1, 0, 1, 2, 0.5, -0.5, 1.5, 10**9, math.nan, math.inf, -math.inf, "10", "", None, True,
     False, [2], (2, 0), {"a": 1}, np.float64(2.0), np.int64(-3), 1e-300, 1e300]
)  # fmt: skip

BUILDER_OPTIONS = {
    "hidden": st.one_of(ODD_VALUES, st.lists(st.integers(-2, 3), max_size=3).map(tuple)),
    "activation": st.one_of(ODD_VALUES, st.sampled_from(["tanh", "relu", "TANH", "swish"])),
    "likelihood": st.one_of(ODD_VALUES, st.sampled_from(["normal", "studentt", "gauss"])),
    "prior": st.one_of(ODD_VALUES, st.sampled_from(["normal", "laplace", "flat"])),
    "prior_scale": ODD_VALUES,
    "bias_scale": ODD_VALUES,
    "standardize": ODD_VALUES,
    "n_classes": ODD_VALUES,
    "noise_sd": ODD_VALUES,
    "output_layer": st.one_of(ODD_VALUES, st.sampled_from(["sampled", "integrated", "x"])),
}


@FUZZ
@given(name=st.sampled_from(sorted(BUILDER_OPTIONS)), data=st.data())
def test_builders_accept_or_name_a_bad_option(name, data):
    value = data.draw(BUILDER_OPTIONS[name])
    outcome = _outcome(lambda: MLP(**{name: value}), name)
    TRIED["builder options"] += 1
    assert outcome in ("works", "refused")


SHARED_OPTIONS = ["draws", "random_seed", "chains", "tune", "target_accept", "advi_iterations",
                  "learning_rate", "restarts", "members", "temperature", "store_mu"]  # fmt: skip


@FUZZ
@given(
    method=st.sampled_from(sorted(METHODS)),
    name=st.sampled_from(SHARED_OPTIONS),
    value=ODD_VALUES,
)
def test_fit_accepts_or_names_a_bad_option_before_sampling(no_sampling, method, name, value):
    X = np.linspace(-1, 1, 10)[:, None]
    y = np.sin(3 * X[:, 0])
    outcome = _outcome(lambda: fit(MLP((2,)), X, y, method=method, **{name: value}), name)
    TRIED["fit options"] += 1
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        if name not in ("store_mu", "random_seed") and outcome == "works":
            pytest.fail(f"method={method!r}: {name}={value!r} reached the sampler")


# -- after a fit -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_fit():
    X = np.linspace(-1, 1, 12)[:, None]
    y = np.sin(3 * X[:, 0])
    return MLP((2,)).fit(X, y, method="advi", draws=20, advi_iterations=200, random_seed=1)


@FUZZ
@given(data=st.data())
def test_predict_accepts_or_names_bad_new_inputs(small_fit, data):
    X, must_fail = _mutated_X(data.draw, np.linspace(-1, 1, 8)[:, None])
    target = data.draw(st.sampled_from([predict, predict_summary]))
    outcome = _outcome(lambda: target(small_fit, X), "X_new")
    TRIED["predict"] += 1
    assert outcome == "refused" or not must_fail


@FUZZ
@given(
    option=st.sampled_from(["method", "order_by", "sign_by", "max_iter", "net"]),
    value=st.one_of(ODD_VALUES, st.sampled_from(["sort", "pivot", "l2", "bias", "nope"])),
)
def test_canonicalize_accepts_or_names_a_bad_option(small_fit, option, value):
    outcome = _outcome(lambda: ident.canonicalize(small_fit, **{option: value}), option)
    TRIED["canonicalize"] += 1
    assert outcome in ("works", "refused")


@FUZZ
@given(data=st.data())
def test_diagnose_refuses_bad_held_out_data(small_fit, data):
    X = np.linspace(-1, 1, 8)[:, None]
    y = np.sin(3 * X[:, 0])
    if data.draw(st.booleans()):
        X, must_fail = _mutated_X(data.draw, X)
        argument = "X_test"
    else:
        y, must_fail = _mutated_y(data.draw, y)
        argument = "y_test"
    if not must_fail:  # a full diagnosis of each accepted case is the slow part: skip it
        return
    outcome = _outcome(lambda: diagnose(small_fit, X_test=X, y_test=y), argument)
    TRIED["diagnose"] += 1
    assert outcome == "refused"


@FUZZ
@given(content=st.binary(max_size=2000), name=st.sampled_from(["fit.nc", "x.csv", "noext"]))
def test_load_names_any_file_that_is_not_a_fit(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    outcome = _outcome(lambda: load(path), "path=")
    TRIED["load"] += 1
    assert outcome == "refused"


CLI_TOKENS = ["--hidden", "--draws", "--chains", "--method", "--likelihood", "--data", "--seed",
              "--prior-scale", "--activation", "--interval", "--target", "--features",
              "-1", "0", "3", "nan", "inf", "1e400", "abc", "mcycle", "nuts", "advi", "8,8",
              "0,", "", "tanh", "normal", "no-such-file.csv"]  # fmt: skip


@FUZZ
@given(tokens=st.lists(st.sampled_from(CLI_TOKENS), max_size=8))
def test_the_command_line_refuses_bad_arguments_with_a_message(no_sampling, tokens, capsys):
    code = None
    try:
        code = main(["fit", "--no-figures", "--no-progress", "--out", "unused", *tokens])
    except SystemExit as exit_:  # argparse: a usage line and exit status 2
        code = exit_.code
    except ReachedSampler:
        code = 0
    TRIED["command line"] += 1
    err = capsys.readouterr().err
    assert code in (0, 2), code
    assert code == 0 or "error" in err
    assert not os.path.exists("unused")


def test_enough_cases_were_tried():
    """The slow tier's total (CASES per target, nine targets: about 1700 at 200)."""
    total = sum(TRIED.values())
    print(f"\nfuzz cases tried: {total} ({dict(TRIED)})")
    if len(TRIED) == 9:  # the whole module ran (not a selection of it)
        assert total >= 1000
