"""The part of asyncpg the backend uses, typed: asyncpg ships no type information, so its
objects cross into our code through these Protocols (STYLE: type the edges)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Transaction(Protocol):
    async def start(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class Connection(Protocol):
    """An asyncpg connection or pool: both run a statement on their own."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Session(Connection, Protocol):
    """One connection of our own (the writer's, the listener's)."""

    def transaction(self, *, isolation: str = ..., readonly: bool = ...) -> Transaction: ...
    def is_closed(self) -> bool: ...
    async def close(self) -> None: ...


def affected(status: str) -> int:
    """The row count of a command status (``"DELETE 3"``, ``"INSERT 0 1"``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
