"""Subscriptions: the API's operations (create, update, pause, resume, replay, delete,
rotate the secret) and the supervisors that deliver them.

Every action goes through the state table; a change stops the subscription's supervisor,
persists the new state, and starts a fresh supervisor from the persisted cursor.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from eventhub import errors
from eventhub.auth import Principal
from eventhub.clock import rfc3339
from eventhub.delivery import egress, signing
from eventhub.delivery.pages import Pages
from eventhub.delivery.states import Move, NotAllowed, Status, next_status
from eventhub.delivery.supervisor import Deps, Supervisor
from eventhub.models import FORMATS, Subscription

LIVE = (Status.ACTIVE, Status.FAILED)
CONFIGURATIONS = frozenset({"SKIP_ERRORS"})
MAX_BATCH = 1000
# Up to this many queued events travel in one request (envelope and batch formats). A hub that
# keeps up sends one event a request; a backlog drains a page at a time, not an event.
DEFAULT_BATCH = 100


class LimitReached(errors.Conflict):
    code = "subscription_limit_reached"


def _visible(sub: Subscription, who: Principal) -> bool:
    return who.role == "admin" or sub.owner == who.key_id


def parse_config(
    body: Any, base: Subscription | None, default_retries: int, rules: egress.Rules
) -> dict[str, Any]:
    """Validate a create/update body; an update may leave out what it does not change. A new
    callback must pass the egress ``rules`` (it is checked again at every connect)."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("send a JSON object")
    out: dict[str, Any] = {}
    name = body.get("name", base.name if base else None)
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidRequest("name is required and must be a non-empty string")
    out["name"] = name
    callback = body.get("callbackInfo")
    if callback is None and base is not None:
        out["uri"], out["headers"] = base.uri, base.headers
    else:
        if not isinstance(callback, dict) or not isinstance(callback.get("uri"), str):
            raise errors.InvalidRequest("callbackInfo.uri is required")
        uri = callback["uri"]
        refusal = egress.check_url(uri, rules)
        if refusal is not None:
            raise errors.CallbackRefused(
                f"callbackInfo.uri: {refusal.message}",
                [errors.Problem(refusal.rule, "callbackInfo.uri")],
            )
        headers = callback.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise errors.InvalidRequest("callbackInfo.headers must map names to strings")
        reserved = [
            k for k in headers if k.lower().startswith("webhook-") or k.lower() == "content-type"
        ]
        if reserved:
            raise errors.InvalidRequest(f"callbackInfo.headers may not set {', '.join(reserved)}")
        out["uri"], out["headers"] = uri, headers
    configurations = body.get("configurations", None)
    if configurations is None:
        out["skip_errors"] = base.skip_errors if base else False
    else:
        if not isinstance(configurations, list) or not set(configurations) <= CONFIGURATIONS:
            raise errors.InvalidRequest(
                f"configurations may only hold {', '.join(sorted(CONFIGURATIONS))}"
            )
        out["skip_errors"] = "SKIP_ERRORS" in configurations
    fmt = body.get("format", base.format if base else "envelope")
    if fmt not in FORMATS:
        raise errors.InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    out["format"] = fmt
    batch = body.get("batchSize", base.batch_size if base else DEFAULT_BATCH)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise errors.InvalidRequest(f"batchSize must be an integer from 1 to {MAX_BATCH}")
    out["batch_size"] = batch
    retries = body.get("maxRetries", base.max_retries if base else default_retries)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise errors.InvalidRequest("maxRetries must be an integer from 0 to 100")
    out["max_retries"] = retries
    return out


class Subscriptions:
    def __init__(
        self, deps: Deps, max_subscriptions: int, default_retries: int, rotation_overlap: float
    ) -> None:
        self._deps = deps
        self._max = max_subscriptions
        self._default_retries = default_retries
        self._overlap = rotation_overlap
        self._supervisors: dict[str, Supervisor] = {}
        self._by_tid: dict[int, set[str]] = defaultdict(set)
        self._pages = Pages(deps.store)
        self._lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for sub in await self._deps.store.load_subscriptions():
            self._adopt(sub)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self._supervisors.values()))

    def _adopt(self, sub: Subscription) -> Supervisor:
        supervisor = Supervisor(sub, self._deps, self._pages)
        self._supervisors[sub.id] = supervisor
        self._by_tid[sub.tid].add(sub.id)
        if sub.status in LIVE:
            supervisor.start()
        return supervisor

    def on_commit(self, tids: Iterable[int]) -> None:
        """Called after a commit that appended events of these triggers."""
        tids = tuple(tids)
        self._pages.appended(tids)  # before any supervisor reads again
        for tid in tids:
            for sub_id in self._by_tid.get(tid, ()):
                self._supervisors[sub_id].wake()

    # -- reads -------------------------------------------------------------------------------

    def get(self, sub_id: str, who: Principal) -> Subscription:
        supervisor = self._supervisors.get(sub_id)
        if supervisor is None or not _visible(supervisor.sub, who):
            raise errors.NotFound(f"no subscription {sub_id!r}")
        return supervisor.sub

    def list(
        self, who: Principal, status: str | None = None, trigger: str | None = None
    ) -> list[Subscription]:
        return [
            s.sub
            for s in self._supervisors.values()
            if _visible(s.sub, who)
            and (status is None or s.sub.status == status)
            and (trigger is None or s.sub.trigger == trigger)
        ]

    def count_on(self, km: str, trigger: str | None = None) -> int:
        return sum(
            1
            for s in self._supervisors.values()
            if s.sub.km == km and (trigger is None or s.sub.trigger == trigger)
        )

    async def lag(self, sub: Subscription) -> int:
        store = self._deps.store
        return await store.count_between(sub.tid, sub.cursor, await store.trigger_head(sub.tid))

    # -- actions -----------------------------------------------------------------------------

    async def create(
        self, who: Principal, km: str, trigger: str, tid: int, body: Any
    ) -> Subscription:
        config = parse_config(body, None, self._default_retries, self._deps.sender.rules)
        clock, store = self._deps.clock, self._deps.store
        async with self._lock:
            if len(self._supervisors) >= self._max:
                await self._deps.notify_limit(who, self._max)
                raise LimitReached(
                    f"the hub holds its maximum of {self._max} subscriptions; delete one first"
                )
            now = rfc3339(clock.now())
            sub = Subscription(
                id=secrets.token_hex(8),
                owner=who.key_id,
                km=km,
                trigger=trigger,
                tid=tid,
                secret=signing.new_secret(),
                status=Status.ACTIVE,
                cursor=await store.trigger_head(tid),
                created_at=now,
                updated_at=now,
                **config,
            )
            await store.save_subscription(sub)
            self._adopt(sub)
        await self._deps.notify(sub, None, "created")
        return sub

    async def act(
        self,
        sub_id: str,
        who: Principal,
        move: Move,
        body: Any = None,
        from_offset: int | None = None,
    ) -> Subscription | None:
        supervisor = self._supervisors.get(sub_id)
        if supervisor is None or not _visible(supervisor.sub, who):
            raise errors.NotFound(f"no subscription {sub_id!r}")
        sub = supervisor.sub
        try:
            status = next_status(sub.status, move)
        except NotAllowed as exc:
            raise errors.Conflict(
                f"cannot {move} subscription {sub_id} in state {exc.status}; allowed: "
                + ", ".join(m for m in _user_moves(exc.status))
            ) from None
        rules = self._deps.sender.rules
        config = (
            parse_config(body, sub, self._default_retries, rules) if move is Move.UPDATE else None
        )
        await supervisor.stop()
        store = self._deps.store
        if status is None:
            del self._supervisors[sub_id]
            self._by_tid[sub.tid].discard(sub_id)
            await store.delete_subscription(sub_id)
            await self._deps.notify(sub, move, "deleted")
            return None
        if config is not None:
            for name, value in config.items():
                setattr(sub, name, value)
        if move is Move.RESUME_FROM_LATEST:
            head = await store.trigger_head(sub.tid)
            sub.skipped += await store.count_between(sub.tid, sub.cursor, head)
            sub.cursor = max(sub.cursor, head)
        if move is Move.REPLAY:
            assert from_offset is not None
            sub.cursor = max(0, from_offset - 1)  # re-emit starting at from_offset
        sub.status = status
        if status is Status.ACTIVE:
            sub.failed_since = None
        sub.updated_at = rfc3339(self._deps.clock.now())
        await store.save_subscription(sub)
        self._adopt(sub)
        await self._deps.notify(sub, move, str(move))
        return sub

    async def rotate_secret(self, sub_id: str, who: Principal) -> Subscription:
        supervisor = self._supervisors.get(sub_id)
        if supervisor is None or not _visible(supervisor.sub, who):
            raise errors.NotFound(f"no subscription {sub_id!r}")
        await supervisor.stop()
        sub = supervisor.sub
        now = self._deps.clock.now()
        sub.previous_secret, sub.secret = sub.secret, signing.new_secret()
        sub.previous_secret_expires = now + self._overlap
        sub.updated_at = rfc3339(now)
        await self._deps.store.save_subscription(sub)
        self._adopt(sub)
        return sub


def _user_moves(status: Status) -> list[str]:
    user = (Move.PAUSE, Move.RESUME, Move.RESUME_FROM_LATEST, Move.UPDATE, Move.REPLAY, Move.DELETE)
    out = []
    for move in user:
        try:
            next_status(status, move)
        except NotAllowed:
            continue
        out.append(str(move))
    return out
