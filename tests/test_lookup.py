"""Registry look-ups for users: unknown names and refused arguments become one-line ``UserError``s."""

from __future__ import annotations

import pytest

from bbcu.archs import list_models
from bbcu.archs.lookup import build_model, find_model
from bbcu.core.errors import UserError


def test_known_names_give_their_entry_and_model() -> None:
    assert find_model("bbcu-l").task == "sr" and find_model("dncnn3").task == "jpeg"
    model = build_model("bbcu-l", {"scale": 2, "channels": 8, "num_units": 1})
    assert (model.model_name, model.model_kwargs) == ("bbcu-l", {"scale": 2, "channels": 8, "num_units": 1})


@pytest.mark.parametrize("source", [None, "m.safetensors"])
def test_unknown_name_lists_every_registered_model(source: str | None) -> None:
    with pytest.raises(UserError) as caught:
        build_model("no-such-net", {}, source=source)
    message = str(caught.value)
    prefix = "" if source is None else f"{source}: "
    assert message.startswith(f"{prefix}unknown model 'no-such-net'")
    assert all(name in message for name in list_models()) and "\n" not in message


def test_refused_arguments_are_named() -> None:
    with pytest.raises(UserError) as caught:
        build_model("dncnn", {"bogus": 1}, source="f.safetensors")
    message = str(caught.value)
    assert message.startswith("f.safetensors: cannot build dncnn with {'bogus': 1}: ")
    assert "bogus" in message.split(": ", 2)[2] and "\n" not in message
