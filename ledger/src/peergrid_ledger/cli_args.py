"""What `peergrid-ledger`'s commands share: the usage error, a public key argument, JSON output.

Promises: `UsageError` is what a command raises for bad usage or a bad input file (`cli.main` prints it as one
line and exits 2); `public_key` takes 64 hex characters or a key file and never prints a private key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .keys import parse_public_key, read_keyfile


class UsageError(Exception):
    pass


def public_key(text: str) -> bytes:
    """A public key given as 64 hex characters or as a key file path."""
    try:
        return parse_public_key(text)
    except ValueError:
        pass
    if Path(text).is_file():
        return read_keyfile(text).public
    raise UsageError(f"{text!r} is neither a hex public key nor a key file")


def write_json(doc: Any, out: str | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if out is None or out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
