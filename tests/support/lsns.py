"""lsns -J's output read as lsns writes it (bytes that are not UTF-8 included): the reference
lsnsfs is held to."""

from __future__ import annotations

import codecs
import json
from typing import Any


def _json_bytes(error: UnicodeError) -> tuple[str, int]:
    """In a JSON string, each byte that is not UTF-8 as the text \\xHH (a JSON "\\\\xHH")."""
    assert isinstance(error, UnicodeDecodeError)
    return "".join(f"\\\\x{b:02x}" for b in error.object[error.start : error.end]), error.end


codecs.register_error("lsns-bytes", _json_bytes)


def lsns_json(raw: bytes) -> Any:
    """lsns -J's output, parsed. lsns writes the bytes of a command line that are not UTF-8 as
    they are, which JSON does not allow: each is read as the text \\xHH, as lsns's table shows
    it (and lsnsfs -J gives it)."""
    return json.loads(raw.decode("utf-8", "lsns-bytes"))
