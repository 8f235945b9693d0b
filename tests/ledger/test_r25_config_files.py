"""R25 F7/F8: the strict YAML reader (a key given twice, text that is not UTF-8) behind every daemon's config,
and key files that appear under their name whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from peergrid_ledger.keys import KeyFileError, Keypair, read_keyfile, write_keyfile
from peergrid_ledger.settings import (
    ConfigError,
    StrictSettings,
    YamlTextError,
    load_settings,
    parse_yaml,
    read_yaml_file,
)


class _Dispatch(StrictSettings):
    enabled: bool = True


class _Daemon(StrictSettings):
    node_id: str
    devices: list[dict[str, object]] = []
    dispatch: _Dispatch = _Dispatch()


# R25's f_yaml_duplicate.sh: a device list, later `devices: []` and dispatch off appended; safe_load kept the last
APPENDED = """node_id: mgmc-1
devices:
  - {name: bess1, nature: battery}
dispatch: {enabled: true}
devices: []
dispatch: {enabled: false}
"""


def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(APPENDED)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, _Daemon)
    assert str(caught.value) == f"{path}: key 'devices' given twice, lines 2 and 5"


def test_a_key_given_twice_inside_a_section_or_a_flow_mapping_is_refused() -> None:
    with pytest.raises(YamlTextError, match="key 'enabled' given twice, lines 3 and 5"):
        parse_yaml("node_id: n\ndispatch:\n  enabled: true\n  period_s: 1\n  enabled: false\n")
    with pytest.raises(YamlTextError, match="key 'port' given twice, on line 2"):
        parse_yaml("devices:\n  - {name: b, port: 502, port: 503}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("on: 1\ntrue: 2\n", "key 'on' given twice, lines 1 and 2 ('true' on line 2: the same key to YAML)"),
        (
            "port: 1\n1: a\n0x1: b\n",
            "key '1' given twice, lines 2 and 3 ('0x1' on line 3: the same key to YAML)",
        ),
        ("null: 1\n~: 2\n", "key 'null' given twice, lines 1 and 2 ('~' on line 2: the same key to YAML)"),
        (
            "{yes: 1, Yes: 2}\n",
            "key 'yes' given twice, on line 1 ('Yes' the second time: the same key to YAML)",
        ),
        ("'a': 1\n\"a\": 2\n", "key 'a' given twice, lines 1 and 2"),
    ],
)
def test_a_key_given_twice_is_named_as_the_file_writes_it(text: str, message: str) -> None:
    # R27: the message named the key as YAML reads it ("key 'True' given twice" for `on:` then `true:`), a
    # text the operator does not find in the file
    with pytest.raises(YamlTextError) as caught:
        parse_yaml(text)
    assert str(caught.value) == message


def test_equal_keys_in_different_mappings_and_merge_overrides_stay_yaml() -> None:
    text = "a: {x: 1}\nb: {x: 2}\nbase: &base {port: 502, unit_id: 1}\ndev:\n  <<: *base\n  port: 1502\n"
    assert parse_yaml(text) == {
        "a": {"x": 1},
        "b": {"x": 2},
        "base": {"port": 502, "unit_id": 1},
        "dev": {"port": 1502, "unit_id": 1},
    }


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_bytes("node_id: n\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, _Daemon)
    assert str(caught.value) == f"{path}: not UTF-8 text at byte 16 (line 2)"


def test_bad_yaml_and_unreadable_files_keep_their_messages(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("node_id: n\ndevices: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3$"):
        load_settings(path, _Daemon)
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "absent.yaml", _Daemon)
    with pytest.raises(FileNotFoundError):  # the loaders word an OSError their own way
        read_yaml_file(tmp_path / "absent.yaml")


_keys = st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=8)
_values = st.integers() | st.text(max_size=8) | st.booleans() | st.none()


@given(st.dictionaries(_keys, _values | st.dictionaries(_keys, _values, max_size=4), max_size=6))
def test_what_safe_dump_writes_reads_back_unchanged(doc: dict[str, object]) -> None:
    assert parse_yaml(yaml.safe_dump(doc)) == doc


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True)
_scalars = st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)


@given(st.dictionaries(_names, _scalars, min_size=1, max_size=6), st.data())
def test_any_key_repeated_anywhere_in_a_mapping_is_refused(
    doc: dict[str, object], data: st.DataObject
) -> None:
    lines = [yaml.safe_dump({key: value}, width=10**6).strip() for key, value in doc.items()]
    repeated = data.draw(st.sampled_from(sorted(doc)))
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, yaml.safe_dump({repeated: data.draw(_scalars)}, width=10**6).strip())
    with pytest.raises(YamlTextError, match=f"key '{repeated}' given twice, lines "):
        parse_yaml("\n".join(lines) + "\n")


class _PowerCut(BaseException):
    """The process stops here: nothing after it runs (but `finally` blocks, which a real cut skips too)."""


def test_a_key_file_cut_off_before_its_sync_leaves_no_key_under_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the name was created (O_EXCL) before the seed was written, so a power cut left an empty node.key
    # and the node crash-looped on it until someone deleted it.
    path = tmp_path / "node.key"

    def cut(fd: int) -> None:
        raise _PowerCut

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", cut)
        with pytest.raises(_PowerCut):
            write_keyfile(path, Keypair.generate())
    assert not path.exists()
    keypair = Keypair.generate()
    write_keyfile(path, keypair)  # the next start makes its key
    assert read_keyfile(path).public == keypair.public
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_a_key_file_whose_write_fails_is_an_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.key"

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(KeyFileError, match="cannot write: No space left on device"):
        write_keyfile(path, Keypair.generate())
    assert list(tmp_path.iterdir()) == []


def test_a_key_file_made_by_someone_else_meanwhile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.key"
    theirs = Keypair.generate()
    real_fsync = os.fsync

    def other_writer_first(fd: int) -> None:  # another process writes the key between our check and our link
        real_fsync(fd)
        if not path.exists():
            monkeypatch.setattr(os, "fsync", real_fsync)
            write_keyfile(path, theirs)

    monkeypatch.setattr(os, "fsync", other_writer_first)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_keyfile(path, Keypair.generate())
    assert read_keyfile(path).public == theirs.public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_a_key_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    head = b'{"type": "peergrid-ed25519-v1", "seed": "'
    path.write_bytes(head + b'\xff"}\n')
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as caught:
        read_keyfile(path)
    assert str(caught.value) == f"{path}: not UTF-8 text at byte {len(head)}"
