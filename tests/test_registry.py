"""The registry speaks to people: unknown names and refused arguments are one-line ``bbcu`` errors that
also satisfy the built-in types (``LookupError``, ``ValueError``) code may catch."""

from __future__ import annotations

import pytest

from bbcu.archs import create_model, list_models, model_entry
from bbcu.core.errors import BbcuError, InvalidArgumentError, ModelNotFoundError


def test_known_names_give_their_entry_and_model() -> None:
    assert model_entry("bbcu-l").task == "sr" and model_entry("dncnn3").task == "jpeg"
    model = create_model("bbcu-l", scale=2, channels=8, num_units=1)
    assert (model.model_name, model.model_kwargs) == ("bbcu-l", {"scale": 2, "channels": 8, "num_units": 1})


def test_unknown_name_lists_every_registered_model() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        create_model("no-such-net")
    message = str(caught.value)
    assert message.startswith("unknown model 'no-such-net'")
    assert all(name in message for name in list_models()) and "\n" not in message
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, BbcuError)


@pytest.mark.parametrize(
    ("name", "kwargs", "named"),
    [
        ("dncnn", {"bogus": 1}, "bogus"),  # a keyword the factory does not take (a TypeError inside)
        ("bbcu-l", {"scale": 5}, "scale"),  # a value the network refuses
        ("dncnn", {"scale": 2}, "scale 1"),
    ],
)
def test_refused_arguments_are_named_and_chained(name: str, kwargs: dict, named: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        create_model(name, **kwargs)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert isinstance(caught.value, ValueError)
