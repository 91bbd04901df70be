"""Configuration: defaults of docs/salience.md and docs/reflection.md, the documented example, strict keys."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from tests.conftest import EXAMPLES
from zos_cli.config import Config, load_config
from zos_cli.errors import ConfigError


def _leaf_settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _leaf_settings(annotation, f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


def test_example_config_loads_to_the_defaults():
    example = load_config(EXAMPLES / "zos.toml", explicit=True)
    # every value is the default but the example's own zos account
    assert example.discord.self_user_id == "1180554433221100987"
    assert example.model_copy(update={"discord": Config().discord}) == Config()


def test_example_config_documents_every_setting():
    text = (EXAMPLES / "zos.toml").read_text()
    from zos_cli.config import ModelProfile, Server

    settings = _leaf_settings(Config) + [f"models.{k}" for k in ModelProfile.model_fields] + [
        f"servers.{k}" for k in Server.model_fields]
    for setting in settings:
        key = setting.rsplit(".", 1)[-1]
        if key in ("models", "servers"):
            continue
        assert re.search(rf"^#?\s*{re.escape(key)}\s*=", text, re.M), f"{setting} is not documented"


def test_design_defaults():
    c = Config()
    assert (c.salience.weights.message, c.salience.weights.reply, c.salience.weights.mention,
            c.salience.weights.reaction, c.salience.weights.dm) == (1.0, 1.5, 2.0, 0.5, 1.5)
    assert (c.salience.caps.server_user, c.salience.caps.global_self) == (100, 200)
    assert sum(c.salience.budget.shares().values()) == pytest.approx(1.0)
    assert c.reflection.nightly_targets == 60 and c.reflection.self_targets == 2


def test_the_defaults_without_a_file_are_the_validated_defaults():
    # With no config file the defaults are constructed, not validated (startup time): they
    # must be exactly what validating them gives, and valid (the budget shares add up).
    from zos_cli.config import Budget, Server, _DEFAULT_SERVER

    defaults = load_config(None)
    assert defaults == Config() == Config.model_validate(defaults.model_dump(by_alias=True))
    assert defaults.model_fields_set == set() and defaults.salience.model_fields_set == set()
    assert Budget.model_validate(defaults.salience.budget.model_dump(by_alias=True))
    assert _DEFAULT_SERVER == Server.model_validate({})
    defaults.salience.weights.message = 3.0  # each load gets its own copy; assignments check
    assert load_config(None).salience.weights.message == 1.0
    with pytest.raises(ValueError):
        defaults.salience.weights.message = "2"


@pytest.mark.parametrize("text,message", [
    ("[servers.abc]\nfocus = 1\n", "servers: Value error, server key 'abc' must be a Discord server id"),
    ("[servers.\"12\"]\nfocus = -1\n", "servers.12.focus: Input should be greater than or equal to 0"),
    ("[discord]\nself_user_id = \"me\"\n", "discord.self_user_id: Value error, must be a Discord id"),
    ("[models.reflection]\nmodell = \"x\"\n", "models.reflection.modell: unknown setting"),
    ("colour = 1\n", "colour: unknown setting"),
])
def test_bad_settings_name_the_key(tmp_path, text, message):
    path = tmp_path / "zos.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, explicit=True)
    assert caught.value.message.startswith(f"{path}: {message}")
