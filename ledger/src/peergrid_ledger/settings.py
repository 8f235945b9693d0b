"""Typed daemon configuration loaded from a YAML file that Ansible renders.

Promises: `load_settings` returns a validated pydantic model or raises `ConfigError` whose message is one
line naming the file and the first offending key. Assumes each daemon defines one pydantic model with
`extra="forbid"` (see `StrictSettings`). Never mutates library globals and never reads the environment.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, NoReturn, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator


class StrictSettings(BaseModel):
    """Base for every config model: unknown keys are errors, values are not coerced silently, and a float is
    finite (NaN or Infinity in a config is an error naming the key, not a setpoint that never settles)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads YAML `yes` as 1 / 1.0 and a quoted "3" as 3 for a number field (R16 L1):
        # a typo or a template's quoting would become a setpoint without a word. A number field takes numbers.
        # (Not the model-wide `strict`: that would also refuse a path or an enum spelled as a string.)
        if isinstance(value, bool | str) and info.field_name is not None:
            kinds = _number_kinds(cls.model_fields[info.field_name].annotation)
            if kinds:
                wanted = " or ".join(sorted(kinds))
                raise ValueError(f"must be a number ({wanted}), got {value!r}")
        return value


def _number_kinds(annotation: Any) -> set[str]:
    """The names of the number types a field is (int, float; None aside), or empty when it may be anything else."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    members = tuple(m for m in members if m is not type(None))
    if members and all(m in (int, float) for m in members):
        return {m.__name__ for m in members}
    return set()


class BrokerTlsSettings(StrictSettings):
    """TLS to the feeder's MQTT broker (the pilot), shared by every daemon's broker section: the feeder CA, and
    this node's client certificate and key (both or neither) whose CN the broker's ACLs use."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pairs(self) -> BrokerTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("a client certificate needs ca_file")
        return self


class ConfigError(Exception):
    """A config file that is missing, unreadable, not YAML, or does not match its model."""


M = TypeVar("M", bound=BaseModel)


def load_settings(path: str | Path, model: type[M]) -> M:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first error as `key.sub: reason`, plus how many more there are."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        message = f"unknown key '{where}'"
    elif first["type"] == "missing":
        message = f"missing required key '{where}'"
    else:
        message = f"'{where}': {first['msg']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return message


def exit_with_config_error(program: str, error: ConfigError) -> NoReturn:
    """The one-line error and exit status 2 that every peergrid daemon uses for a bad config."""
    print(f"{program}: config error: {error}", file=sys.stderr)
    raise SystemExit(2)
