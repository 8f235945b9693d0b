"""Typed daemon configuration loaded from a YAML file that Ansible renders, and the one strict YAML reader.

Promises: `load_settings` returns a validated pydantic model or raises `ConfigError` whose message is one
line naming the file and the first offending key. `read_yaml_file` / `parse_yaml` (every peergrid YAML file an
operator writes: daemon configs, scenarios, the DSO's tariff) refuse a key given twice in one mapping, which
PyYAML's `safe_load` would settle silently by keeping the last (R25 F8), and text that is not UTF-8, with a
`YamlTextError` naming the line or byte; the caller prefixes its file. Assumes each daemon defines one pydantic
model with `extra="forbid"` (see `StrictSettings`). Never mutates library globals and never reads the
environment.
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


class YamlTextError(ValueError):
    """YAML text that is not UTF-8, does not parse, or gives a key twice in one mapping. The message names the
    place in the text (a byte or a line) but not the file: each loader prefixes its own file (and key)."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice (a `yaml.YAMLError`, so a caller of the loader that catches those sees
    it too)."""


class StrictYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping giving a key twice is an error naming both lines: an
    inventory variable rendered twice or a section appended by hand must not replace the first silently.
    Merge keys (`<<: *anchor`) stay YAML's: a key written beside the merge overrides the merged one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, tuple[int, str]] = {}  # each key's first line and its text there
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            written = _as_written(key_node, key)
            try:
                seen = first.get(key)
            except TypeError:  # unhashable: SafeConstructor's own error says so
                break
            if seen is not None:
                seen_line, seen_written = seen
                where = f"on line {line}" if seen_line == line else f"lines {seen_line} and {line}"
                message = f"key '{seen_written}' given twice, {where}"
                if written != seen_written:  # `on:` then `true:`, `1:` then `0x1:`: one key to YAML
                    again = "the second time" if seen_line == line else f"on line {line}"
                    message += f" ('{written}' {again}: the same key to YAML)"
                raise DuplicateKeyError(None, None, message)
            first[key] = (line, written)
        return super().construct_mapping(node, deep=deep)


def _as_written(key_node: yaml.Node, key: Any) -> str:
    """A key as the file writes it (`on`, `0x1`, `~`), not as YAML reads it (True, 1, None): the operator
    searches the file for that text. A scalar's text (a quoted one without its quotes); anything else as read."""
    return key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)


def parse_yaml(text: str) -> Any:
    """The document in `text` through `StrictYamlLoader`; `YamlTextError` for a repeated key or bad YAML."""
    try:
        return yaml.load(text, Loader=StrictYamlLoader)  # a SafeLoader subclass: no arbitrary objects
    except DuplicateKeyError as exc:
        raise YamlTextError(str(exc.problem)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise YamlTextError(f"not valid YAML{where}") from None


def decode_utf8(data: bytes) -> str:
    """`data` as UTF-8 text; `YamlTextError` naming the first byte that is not (counted from 0, as `cmp` and
    `hexdump` do) and its line: a latin-1 comment, a binary copied over the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlTextError(f"not UTF-8 text at byte {exc.start} (line {line})") from None


def read_yaml_file(path: str | Path) -> Any:
    """The YAML document in `path`, strictly (see `parse_yaml`). `OSError` passes through unchanged: each
    loader words a missing or unreadable file its own way."""
    return parse_yaml(decode_utf8(Path(path).read_bytes()))


M = TypeVar("M", bound=BaseModel)


def load_settings(path: str | Path, model: type[M]) -> M:
    path = Path(path)
    try:
        raw = read_yaml_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except YamlTextError as exc:
        raise ConfigError(f"{path}: {exc}") from None
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
