"""The outbound HTTP edge: one pool of keep-alive connections for every subscription, and a
bound on the requests in flight.

Not aiohttp's client, which delivery used before: eventhub's own HTTP/1.1 client (``pool``,
``http1``) does only what a webhook needs, at ~75 us of CPU a request against aiohttp's ~200
(1 KB POSTs to the same receiver, 64 in flight, one process). With 10,000 subscriptions on
two cores, that CPU is the fan-out time. Not httpx either: PERF-NOTES.md measured its pool
at ~30x slower under concurrency. Redirects are not followed (SPEC §8: a redirect could lead
anywhere the egress rules refuse): a 3xx is a failed delivery whose error says so.

A callback whose host has no address the egress rules allow gets an answer marked
``refused``: policy classifies it as a rejection, not as a flaky network.

A request takes a permit from its owner's gate (``delivery_connections_per_owner``), then
one from the global gate (``delivery_connections``): one owner's stalled receivers can hold
at most its own share of the connections, and the rest stay free for the other owners.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from eventhub import tasks
from eventhub.delivery import egress, gate, http1, owners, pool

# Enough of a redirect's Location for a person to see where it pointed.
_LOCATION_SHOWN = 200


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (~1.1 us
# against ~0.3), and one is built for every delivery. Nothing changes one once built.
@dataclass(slots=True)
class Answer:
    status: int | None  # None: no answer (refused, reset, timed out)
    retry_after: str | None
    error: str | None
    latency_ms: float
    refused: bool = False  # the egress rules refused every address: nothing was sent
    body: bytes | None = None  # with ``keep_body``: the answer's body, None if longer


class Sender:
    def __init__(
        self,
        connections: int,
        connect_timeout: float,
        total_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        rules: egress.Rules = egress.DEFAULT,
        per_owner: int | None = None,
    ) -> None:
        self._pool = pool.Pool(
            connect_timeout,
            total_timeout,
            max_idle=connections,
            ssl_context=ssl_context,
            rules=rules,
        )
        # Requests wait for a connection here, before any timer starts or any bytes are
        # encoded, so a fan-out to 10,000 subscriptions waits cheaply.
        self._slots = gate.Gate(connections)
        # Taken before ``_slots``: an owner at its cap waits without holding a global slot.
        self._owners = owners.PerOwner(connections if per_owner is None else per_owner)

    @property
    def per_owner(self) -> int:
        """The most requests one owner has in flight at once."""
        return self._owners.permits

    @property
    def rules(self) -> egress.Rules:
        """The egress rules every connection obeys; create/update checks URLs against them."""
        return self._pool.rules

    async def start(self, owner: tasks.Tasks | None = None) -> None:
        await self._pool.start(owner)

    async def stop(self) -> None:
        await self._pool.close()

    @staticmethod
    def target(uri: str, headers: Mapping[str, str]) -> http1.Target:
        """A subscription's callback, parsed and encoded once (never raises)."""
        return http1.target(uri, headers)

    async def post(
        self,
        target: http1.Target,
        headers: Mapping[str, str],
        body: bytes,
        owner: str,
        keep_body: int = 0,
    ) -> Answer:
        """One request of ``owner``'s (the subscription's or process's API key id); never
        raises. With ``keep_body``, the answer's body up to that many bytes comes back."""
        if not self._owners.try_acquire(owner):  # the common case costs no coroutine
            await self._owners.acquire(owner)
        try:
            return await self._post(target, headers, body, keep_body)
        finally:
            self._owners.release(owner)

    async def _post(
        self, target: http1.Target, headers: Mapping[str, str], body: bytes, keep_body: int
    ) -> Answer:
        # Not ``async with``: its __aenter__ and __aexit__ are two coroutines a request, and
        # the slot is nearly always free.
        slots = self._slots
        if not slots.try_acquire():
            await slots.acquire()
        try:
            started = time.perf_counter()
            try:
                answer = await self._pool.post(target, headers, body, keep_body)
            except TimeoutError:
                error = "timed out"
            except egress.Refused as exc:
                latency = (time.perf_counter() - started) * 1000
                return Answer(None, None, str(exc), latency, refused=True)
            except (OSError, ValueError, http1.ProtocolError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                return Answer(
                    answer.status,
                    answer.retry_after,
                    _error_of(answer),
                    (time.perf_counter() - started) * 1000,
                    body=answer.body,
                )
            return Answer(None, None, error, (time.perf_counter() - started) * 1000)
        finally:
            slots.release()


def _error_of(answer: http1.Answer) -> str | None:
    status = answer.status
    if status < 300:
        return None
    if status < 400:
        where = answer.location or "no Location"
        if len(where) > _LOCATION_SHOWN:
            where = where[:_LOCATION_SHOWN] + "..."
        where = "".join(c if c.isprintable() else "?" for c in where)
        return f"HTTP {status}: redirect to {where} refused (redirects are never followed)"
    return f"HTTP {status}"
