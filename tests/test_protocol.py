"""Every catalogue model implements the builder protocol that the rest of the library uses."""

import inspect

import pytest

from bnncat.models import MLP, MixtureRegressor, OrderedMLP
from bnncat.models.protocol import ModelBuilder

BUILDERS = [MLP((3,)), OrderedMLP((3,)), MixtureRegressor((3,), form="mdn")]


@pytest.mark.parametrize("net", BUILDERS, ids=lambda n: type(n).__name__)
def test_builders_implement_the_protocol(net):
    assert isinstance(net, ModelBuilder)
    for name, member in inspect.getmembers(ModelBuilder):
        if callable(member) and not name.startswith("_"):
            # same keyword-only options, so callers can rely on them
            wanted = inspect.signature(member).parameters
            given = inspect.signature(getattr(type(net), name)).parameters
            assert list(wanted) == list(given), f"{type(net).__name__}.{name}"


def test_an_object_missing_a_member_is_not_a_builder():
    class Partial:
        hidden, activation, likelihood, head_dim, samples_canonically = (
            (3,),
            "tanh",
            "normal",
            "output",
            False,
        )

    assert not isinstance(Partial(), ModelBuilder)
