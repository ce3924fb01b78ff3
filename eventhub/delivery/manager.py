"""Subscriptions: the API's operations (create, update, pause, resume, replay, delete,
rotate the secret) and the supervisors that deliver them.

Every action goes through the state table; a change stops the subscription's supervisor,
persists the new state, and starts a fresh supervisor from the persisted cursor.

Actions on one subscription are serialised by a lock of its own (actions on different
subscriptions stay concurrent): each one checks the state, stops the supervisor, checks again
(the supervisor may have moved the state while it stopped), persists and adopts a fresh
supervisor, all under that lock. So a subscription never has two supervisors delivering, and
an action that waited behind a delete finds the subscription gone (404).

On PostgreSQL several processes share the subscriptions (SPEC §9): every process keeps a
copy of each, but runs supervisors only for those whose lease it holds (``leases.py``). An
action may land on any process: it persists the change, and the store's notification makes
every other process reload its copy (``changed_elsewhere``), the holder restarting its
supervisor from what was persisted. Reads on a process that does not hold the subscription
reload it from the database first (``fresh``), as its cursor moves on the holder only.

A revoked API key's subscriptions stop: Active and Failed ones become Paused with
``lastError`` set to ``owner revoked`` (and a ``eventhub.subscription.paused`` notification
with that reason); Rejected and Suspended ones stay as they are. None of them can be moved
back to Active (409): only pause, rotate-secret and delete are left to an admin. A
subscription whose owner key no longer exists at all counts as revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from collections.abc import Set as AbstractSet

from eventhub import auth, errors
from eventhub.auth import Principal
from eventhub.clock import rfc3339
from eventhub.consume.pages import Pages
from eventhub.delivery import owners, signing
from eventhub.delivery.config import Config, NewSubscription, SubscriptionUpdate, parse_config
from eventhub.delivery.leases import Leases, Local
from eventhub.delivery.states import Move, NotAllowed, Status, next_status
from eventhub.delivery.supervisor import Deps, Supervisor
from eventhub.models import Subscription

log = logging.getLogger(__name__)

LIVE = (Status.ACTIVE, Status.FAILED)
# The pause reason of a revoked owner's subscriptions: their lastError and the notification's.
OWNER_REVOKED = "owner revoked"


class LimitReached(errors.Conflict):
    code = "subscription_limit_reached"


def _visible(sub: Subscription, who: Principal) -> bool:
    return who.role == "admin" or sub.owner == who.key_id


class Subscriptions:
    def __init__(
        self,
        deps: Deps,
        max_subscriptions: int,
        default_retries: int,
        rotation_overlap: float,
        leases: Leases | None = None,
    ) -> None:
        self._deps = deps
        self._leases: Leases = leases or Local()
        self._shared = leases is not None  # other processes may hold (and change) some
        self._reloads: set[asyncio.Task[None]] = set()  # at most one: _drain_reloads
        self._to_reload: set[str] = set()
        self._max = max_subscriptions
        self._default_retries = default_retries
        self._overlap = rotation_overlap
        self._supervisors: dict[str, Supervisor] = {}
        # Per trigger, its supervisors in the order they were adopted (at start: the order the
        # subscriptions were created in, which is their rows' order on disk): a fan-out wakes
        # them in that order, so the cursor writes of one commit land on neighbouring pages.
        self._by_tid: dict[int, dict[str, Supervisor]] = defaultdict(dict)
        self._pages = Pages(deps.store)
        # Pages held per owner: twice its connections, as ``Deps.pages`` is for the whole hub.
        self._owner_pages = owners.PerOwner(2 * deps.sender.per_owner)
        # Guards the subscription limit and the revoked set against a racing create.
        self._lock = asyncio.Lock()
        # One per subscription that has seen an action; dropped with the subscription.
        self._locks: dict[str, asyncio.Lock] = {}
        # Owners whose subscriptions may not deliver: revoked keys, and keys that are gone.
        self._revoked: set[str] = set()
        # Those this process revoked (``revoke``): it pauses their subscriptions, also those
        # it hears of later (``_reload``).
        self._revoked_here: set[str] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        store = self._deps.store
        live = {k.key_id for k in await store.list_keys() if k.revoked_at is None}
        live.add(auth.ENV_ADMIN_ID)  # the env admin key cannot be revoked
        for sub in await store.load_subscriptions():
            if sub.owner not in live:
                self._revoked.add(sub.owner)
                # The hub stopped between revoking the key and pausing: finish the job.
                if sub.status in LIVE:
                    await self._pause_revoked(sub)
            await self._adopt(sub)
        assert self._deps.tasks is not None, "the hub's tasks run the lease task"
        await self._leases.start(self._deps.tasks, self._leases_changed)

    async def stop(self) -> None:
        self._closed = True  # an action finishing after this adopts without starting
        for task in tuple(self._reloads):
            task.cancel()
        await asyncio.gather(*(s.stop() for s in self._supervisors.values()))
        await self._leases.stop()  # after the supervisors: nobody else delivers before

    # -- leases and other processes (PostgreSQL) ---------------------------------------------

    async def _leases_changed(self, gained: AbstractSet[str], lost: AbstractSet[str]) -> None:
        """The lease task gained or lost these. Lost: stop delivering now (``holds`` already
        says no, so nothing restarts them). Gained: reload from the database (the previous
        holder moved the cursor) and start."""
        for sub_id in lost:
            supervisor = self._supervisors.get(sub_id)
            if supervisor is not None:
                async with self._locks.setdefault(sub_id, asyncio.Lock()):
                    await supervisor.stop()
        if gained:
            await self._reload(gained)

    def changed_elsewhere(self, sub_id: str) -> None:
        """Another process saved or deleted ``sub_id`` (the store's hook): reload it. Ids
        that arrive together (a burst, a listener's reconnect) are reloaded by one query."""
        if self._closed:
            return
        self._to_reload.add(sub_id)
        if not self._reloads:
            task = asyncio.create_task(self._drain_reloads(), name="subscription-reloads")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _drain_reloads(self) -> None:
        while self._to_reload and not self._closed:
            ids, self._to_reload = self._to_reload, set()
            try:
                await self._reload(ids)
            except Exception:
                # The database is away: the copies stay as they were until the next change
                # (reads on a non-holder reload anyway; the holder's lease task notices).
                log.warning("reloading %d subscriptions failed", len(ids), exc_info=True)

    async def _reload(self, ids: AbstractSet[str]) -> None:
        """Replace the copies of ``ids`` by what the database holds: adopted afresh (so
        restarted where this process holds the lease), or dropped if deleted."""
        stored = {s.id: s for s in await self._deps.store.load_subscriptions(ids)}
        for sub_id in ids:
            async with self._locks.setdefault(sub_id, asyncio.Lock()):
                fresh = stored.get(sub_id)
                if fresh is not None:
                    if sub_id not in self._supervisors:
                        self._leases.poke()  # created elsewhere: maybe ours to claim
                    previous = self._supervisors.get(sub_id)
                    if (
                        fresh.owner in self._revoked_here
                        and fresh.status in LIVE
                        and (previous is None or previous.sub.status in LIVE)
                    ):
                        # Created on another process by a request authenticated just before
                        # it heard of our revocation, after ``revoke`` looked: pause it too.
                        if previous is not None:
                            await previous.stop()
                        await self._pause_revoked(fresh)
                    await self._adopt(fresh)
                    continue
                previous = self._supervisors.pop(sub_id, None)
                if previous is not None:
                    await previous.stop()
                    self._by_tid[previous.sub.tid].pop(sub_id, None)

    async def fresh(self, ids: AbstractSet[str] | None = None) -> None:
        """Before a read: on PostgreSQL, bring the copies this process does not deliver up
        to date (the holder moves their cursors and counters); ``ids`` None means all."""
        if not self._shared:
            return
        stale = {
            sub_id
            for sub_id, s in self._supervisors.items()
            if (ids is None or sub_id in ids) and not self._leases.holds(sub_id)
        }
        if not stale:
            return
        for sub in await self._deps.store.load_subscriptions(stale):
            if sub.id in stale:
                async with self._locks.setdefault(sub.id, asyncio.Lock()):
                    if sub.id in self._supervisors and not self._leases.holds(sub.id):
                        await self._adopt(sub)  # not started: another process holds it

    async def _adopt(self, sub: Subscription) -> Supervisor:
        """Give ``sub`` a fresh supervisor (started if it is live). Any previous supervisor
        of the same subscription is stopped first: never two deliver at once."""
        previous = self._supervisors.get(sub.id)
        if previous is not None:
            await previous.stop()
        supervisor = Supervisor(sub, self._deps, self._pages, self._owner_pages)
        self._supervisors[sub.id] = supervisor
        self._by_tid[sub.tid][sub.id] = supervisor
        if sub.status in LIVE and not self._closed and self._leases.holds(sub.id):
            supervisor.start()
        return supervisor

    @contextlib.asynccontextmanager
    async def _hold(self, sub_id: str, who: Principal | None) -> AsyncIterator[Supervisor]:
        """The subscription's current supervisor, under the subscription's lock; NotFound if
        it does not exist (or is not ``who``'s), also when a delete won the race for it."""
        supervisor = self._supervisors.get(sub_id)
        if supervisor is None or (who is not None and not _visible(supervisor.sub, who)):
            raise errors.NotFound(f"no subscription {sub_id!r}")
        lock = self._locks.setdefault(sub_id, asyncio.Lock())
        async with lock:
            supervisor = self._supervisors.get(sub_id)  # the action before us replaced it
            if supervisor is None:
                raise errors.NotFound(f"no subscription {sub_id!r}")
            if self._shared and not self._leases.holds(sub_id):
                # Another process delivers it: act on what it persisted, not on our copy.
                stored = await self._deps.store.load_subscriptions({sub_id})
                if not stored:
                    raise errors.NotFound(f"no subscription {sub_id!r}")
                supervisor = await self._adopt(stored[0])
            yield supervisor

    def on_commit(self, tids: Iterable[int]) -> None:
        """Called after a commit that appended events of these triggers."""
        tids = tuple(tids)
        self._pages.appended(tids)  # before any supervisor reads again
        for tid in tids:
            supervisors = self._by_tid.get(tid)
            if supervisors is not None:
                for supervisor in supervisors.values():
                    supervisor.wake()

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

    def all(self) -> tuple[Subscription, ...]:
        """Every subscription, whoever owns it (``/metrics``)."""
        return tuple(s.sub for s in self._supervisors.values())

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
        self, who: Principal, km: str, trigger: str, tid: int, body: NewSubscription
    ) -> Subscription:
        config = parse_config(body, None, self._default_retries, self._deps.sender.rules)
        clock, store = self._deps.clock, self._deps.store
        async with self._lock:
            if who.key_id in self._revoked:
                # Authenticated just before its key was revoked: no new subscription.
                raise errors.Unauthorized("this API key was revoked")
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
                **dataclasses.asdict(config),
            )
            await store.save_subscription(sub)
            await self._leases.take(sub.id)  # else another process's lease task claims it
            await self._adopt(sub)
        await self._deps.notify(sub, None, "created")
        return sub

    async def act(
        self,
        sub_id: str,
        who: Principal,
        move: Move,
        body: SubscriptionUpdate | None = None,
        from_offset: int | None = None,
    ) -> Subscription | None:
        """Apply ``move`` (an update with its ``body``, a replay ``from_offset``) to ``who``'s
        subscription; None when it was deleted. Conflict (409) when the state table refuses
        the move from the current state."""
        async with self._hold(sub_id, who) as supervisor:
            sub = supervisor.sub
            self._check(sub, move)  # refuse before disturbing a delivery in flight
            rules = self._deps.sender.rules
            config: Config | None = None
            if move is Move.UPDATE:
                assert body is not None, "an update has a body"
                config = parse_config(body, sub, self._default_retries, rules)
            await supervisor.stop()
            try:
                status = self._check(sub, move)  # the supervisor may have moved it meanwhile
            except errors.Conflict:
                await self._adopt(sub)
                raise
            try:
                return await self._apply(sub, move, status, config, from_offset)
            except BaseException:
                # Not persisted (a full disk, say): the subscription keeps a supervisor for
                # the state it shows, rather than showing Active with nothing delivering.
                if sub_id in self._supervisors:
                    await self._adopt(sub)
                raise

    async def _apply(
        self,
        sub: Subscription,
        move: Move,
        status: Status | None,
        config: Config | None,
        from_offset: int | None,
    ) -> Subscription | None:
        """Persist ``move`` and adopt the result. The caller holds the subscription's lock
        and has stopped its supervisor."""
        store = self._deps.store
        if status is None:
            await store.delete_subscription(sub.id)  # first: a failure leaves it as it was
            del self._supervisors[sub.id]
            self._by_tid[sub.tid].pop(sub.id, None)
            del self._locks[sub.id]  # whoever waits on it finds the subscription gone
            await self._deps.notify(sub, move, "deleted")
            return None
        if config is not None:
            for name, value in dataclasses.asdict(config).items():
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
        await self._adopt(sub)
        await self._deps.notify(sub, move, str(move))
        return sub

    def _check(self, sub: Subscription, move: Move) -> Status | None:
        """The state ``move`` leads to; Conflict if the table or a revoked owner refuses."""
        try:
            status = next_status(sub.status, move)
        except NotAllowed as exc:
            raise errors.Conflict(
                f"cannot {move} subscription {sub.id} in state {exc.status}; allowed: "
                + ", ".join(m for m in _user_moves(exc.status))
            ) from None
        if status is Status.ACTIVE and sub.owner in self._revoked:
            raise errors.Conflict(
                f"cannot {move} subscription {sub.id}: its owner's API key was revoked;"
                " it can only be deleted"
            )
        return status

    async def rotate_secret(self, sub_id: str, who: Principal) -> Subscription:
        async with self._hold(sub_id, who) as supervisor:
            await supervisor.stop()
            sub = supervisor.sub
            before = sub.secret, sub.previous_secret, sub.previous_secret_expires, sub.updated_at
            now = self._deps.clock.now()
            sub.previous_secret, sub.secret = sub.secret, signing.new_secret()
            sub.previous_secret_expires = now + self._overlap
            sub.updated_at = rfc3339(now)
            try:
                await self._deps.store.save_subscription(sub)
            except BaseException:
                # Not persisted: nobody was told the new secret, so keep signing with the old.
                sub.secret, sub.previous_secret, sub.previous_secret_expires, sub.updated_at = (
                    before
                )
                raise
            finally:
                await self._adopt(sub)
            return sub

    # -- revoked owners ----------------------------------------------------------------------

    async def revoke(self, owner: str) -> None:
        """``owner``'s API key was revoked (and that is persisted): pause its live
        subscriptions; none of its subscriptions may deliver again."""
        async with self._lock:  # a create that passed its check lands before our snapshot
            self._revoked.add(owner)
            self._revoked_here.add(owner)
            owned = [s.sub.id for s in self._supervisors.values() if s.sub.owner == owner]
        await asyncio.gather(*(self._revoke_one(sub_id) for sub_id in owned))

    def revoked_elsewhere(self, owner: str) -> None:
        """Another process revoked ``owner``'s key (PostgreSQL): none of its subscriptions
        may be resumed here either. That process paused them, and saving each told this one
        (``changed_elsewhere``), so there is nothing to stop here."""
        self._revoked.add(owner)

    async def _revoke_one(self, sub_id: str) -> None:
        with contextlib.suppress(errors.NotFound):  # deleted meanwhile: nothing to pause
            async with self._hold(sub_id, None) as supervisor:
                sub = supervisor.sub
                if sub.status not in LIVE:
                    return  # Paused, Rejected, Suspended: not delivering; they stay as they are
                await supervisor.stop()
                if sub.status in LIVE:  # not moved to Rejected or Suspended while stopping
                    await self._pause_revoked(sub)
                await self._adopt(sub)

    async def _pause_revoked(self, sub: Subscription) -> None:
        """Active or Failed -> Paused because the owner was revoked: persist and notify.
        The caller holds the subscription's lock and has stopped its supervisor."""
        status = next_status(sub.status, Move.REVOKE)
        assert status is not None
        sub.status = status
        sub.failed_since = None
        sub.last_error = OWNER_REVOKED
        sub.updated_at = rfc3339(self._deps.clock.now())
        await self._deps.store.save_subscription(sub)
        # The notification is a pause like any other (eventhub.subscription.paused); its
        # reason says why.
        await self._deps.notify(sub, Move.PAUSE, OWNER_REVOKED)


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
