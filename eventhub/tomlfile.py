"""Reading a TOML file whose refusal names the file: the catalogue file read at start and the
files the CLI applies."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from eventhub import errors

T = TypeVar("T")


def load(path: Path) -> dict[str, Any]:
    """The document in ``path``; a file that is not TOML is an ``InvalidRequest`` naming it
    and so is one that cannot be read: at start, both are one line from ``eventhub serve``."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise errors.InvalidRequest(f"{path}: cannot be read: {exc.strerror or exc}") from None
    with fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise errors.InvalidRequest(f"{path}: {exc}") from None
        except RecursionError:
            # tomllib recurses once per nested inline table or array, without a limit.
            raise errors.InvalidRequest(f"{path}: values nest too deeply") from None


def convert(value: Any, type_: type[T], where: str) -> T:
    """``value`` (a table of a file, or built in) as a ``type_``, the typed shape the API
    decodes the same thing into; a refusal is a 400 naming ``where`` and the field:
    ``catalog.toml: models.m: triggers[0].id: expected `str`...``."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(errors.explain_schema(str(exc), where)[0]) from None
