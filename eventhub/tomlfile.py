"""Reading a TOML file whose refusal names the file: the catalogue file read at start and the
files the CLI applies."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from eventhub import errors


def load(path: Path) -> dict[str, Any]:
    """The document in ``path``; a file that is not TOML is an ``InvalidRequest`` naming it
    (an unreadable one raises ``OSError``, which names it already)."""
    with path.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise errors.InvalidRequest(f"{path}: {exc}") from None
        except RecursionError:
            # tomllib recurses once per nested inline table or array, without a limit.
            raise errors.InvalidRequest(f"{path}: values nest too deeply") from None
