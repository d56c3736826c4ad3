import pytest

from worker.actions.secrets import (
    BadSecretReference,
    SecretNotSet,
    has_references,
    resolve_secrets,
)

ENV = {"HOOK_TOKEN": "t0k3n", "API_KEY": "k"}


def test_references_are_resolved_inside_strings_and_nested_json():
    value = {
        "url": "https://hooks.example/${env:HOOK_TOKEN}/x",
        "headers": {"X-Key": "${env:API_KEY}"},
        "list": ["a", "${env:API_KEY}${env:API_KEY}", 3, None],
    }
    assert resolve_secrets(value, ENV) == {
        "url": "https://hooks.example/t0k3n/x",
        "headers": {"X-Key": "k"},
        "list": ["a", "kk", 3, None],
    }


def test_text_without_references_is_returned_as_is():
    assert resolve_secrets("plain $HOME {x}", ENV) == "plain $HOME {x}"


def test_missing_variable_names_it_without_any_value():
    with pytest.raises(SecretNotSet) as info:
        resolve_secrets("${env:NOPE}", ENV)
    assert str(info.value) == (
        "secret reference ${env:NOPE} cannot be resolved: environment variable NOPE is not "
        "set in the executor's environment; set it and restart"
    )


@pytest.mark.parametrize("text", ["${file:/etc/x}", "${env:}", "${env:1ABC}"])
def test_other_reference_forms_are_rejected(text):
    with pytest.raises(BadSecretReference) as info:
        resolve_secrets(text, ENV)
    assert str(info.value) == f"bad secret reference {text!r}: expected ${{env:NAME}}"


def test_has_references_finds_nested_references():
    assert has_references({"a": ["x", "${env:A}"]})
    assert not has_references({"a": ["x", "$A"]})
