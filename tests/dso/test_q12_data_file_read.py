"""Q12: the enrolment queue's file and the token file are read back by one helper (`data_files.read_entries`), in
the same words for each (before, each repeated the read, the parse, the type check and the refusals): a file that
cannot be read or is not ours is refused naming its path and which file it is, never read as an empty one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peergrid_dso.data_files import read_entries
from peergrid_dso.services.enrolment_file import EnrolmentFile, EnrolmentFileError
from peergrid_dso.services.enrolment_tokens import TokenStore, TokenStoreError

FILES = [  # (which file, its reader, its error, our type with its entries in the other shape)
    (
        "enrolment file",
        lambda path: EnrolmentFile(path).read(),
        EnrolmentFileError,
        b'{"type": "peergrid-enrolments-v1", "enrolments": {}}',
    ),
    (
        "enrolment token file",
        lambda path: TokenStore(path).records(),
        TokenStoreError,
        b'{"type": "peergrid-enrolment-tokens-v1", "tokens": []}',
    ),
]


@pytest.mark.parametrize(("file", "read", "error", "other_shape"), FILES)
def test_a_file_that_cannot_be_read_is_refused_by_its_name(
    tmp_path: Path, file: str, read: Any, error: type[Exception], other_shape: bytes
) -> None:
    path = tmp_path / "data.json"
    path.mkdir()  # a folder where the file should be: read_bytes raises IsADirectoryError (an OSError)
    with pytest.raises(
        error, match=rf"^{path}: cannot read the {file} \(Is a directory\); the file was left"
    ):
        read(path)


@pytest.mark.parametrize(("file", "read", "error", "other_shape"), FILES)
def test_a_json_document_of_another_shape_is_not_ours(
    tmp_path: Path, file: str, read: Any, error: type[Exception], other_shape: bytes
) -> None:
    path = tmp_path / "data.json"
    for body in (b"[]", other_shape):
        path.write_bytes(body)
        with pytest.raises(error, match=rf"^{path}: not a peergrid {file} \(expected peergrid-"):
            read(path)
        assert path.read_bytes() == body  # left untouched


def test_the_entries_of_our_type_or_none_without_a_file(tmp_path: Path) -> None:
    def refuse(why: str) -> Exception:
        return ValueError(why)

    path = tmp_path / "data.json"
    assert read_entries(path, "enrolment file", "t-v1", "enrolments", list, refuse) is None
    path.write_text('{"type": "t-v1", "enrolments": [1, 2]}')
    assert read_entries(path, "enrolment file", "t-v1", "enrolments", list, refuse) == [1, 2]
