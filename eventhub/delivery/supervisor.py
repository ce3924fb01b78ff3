"""One supervisor task per live subscription: a cursor consumer (``eventhub.consume``) of the
subscription's trigger whose handler renders, signs and sends each page, and commits the
cursor only after a 2xx, in offset order, forever.

The consumer owns the wake-up, the paging, the page permit and the crash semantics; what is
here is webhook delivery's own: retries with backoff (``Retry``), ``skipErrors``, the state
machine (Active -> Failed -> probes -> Active or Suspended; Rejected), and the lazy cursor
write after a 2xx (``record_delivery``, not awaited).

The task is watched (``eventhub.tasks``): if it crashes, the subscription's ``lastError`` says
so and ``/readyz`` names it until it restarts, after a growing delay, from its cursor. The
cursor only ever moves after a 2xx, so the restart re-delivers at most one page: order and
at-least-once hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from eventhub import tasks
from eventhub.auth import Principal
from eventhub.clock import Clock, rfc3339
from eventhub.consume.consumer import Consumer, Outcome, Result, Retry
from eventhub.consume.pages import Pages
from eventhub.consume.permit import Permit
from eventhub.delivery import policy, render, signing
from eventhub.delivery.owners import PerOwner
from eventhub.delivery.policy import RetryPolicy, Verdict
from eventhub.delivery.sender import Answer, Sender
from eventhub.delivery.states import Move, Status, next_status
from eventhub.events import StoredEvent
from eventhub.log.base import DeliveryStore
from eventhub.models import Attempt, Subscription
from eventhub.ops.metrics import Metrics

log = logging.getLogger(__name__)

# Every supervisor's task is named this and its subscription's id (Hub.health counts them).
TASK_PREFIX = "subscription-"

# (subscription, move, reason) -> append the lifecycle notification; move None is "created"
Notify = Callable[[Subscription, Move | None, str], Awaitable[None]]
# (who tried, the limit) -> append eventhub.subscriptions.limit_reached
NotifyLimit = Callable[[Principal, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Deps:
    store: DeliveryStore
    sender: Sender
    clock: Clock
    policy: RetryPolicy
    notify: Notify
    notify_limit: NotifyLimit
    # Supervisors holding a page of events in memory while they deliver it. Without a bound,
    # 10,000 subscriptions waking to a backlog would each read a page before waiting for a
    # connection: gigabytes. A supervisor waiting out a backoff gives its permit back.
    pages: asyncio.Semaphore
    # Owns and watches the supervisors' tasks (the hub's, so /readyz sees them).
    tasks: tasks.Tasks = field(default_factory=tasks.Tasks)
    # Attempts, retries and probes are counted here (the hub's, for /metrics).
    metrics: Metrics = field(default_factory=Metrics)


class Supervisor:
    def __init__(self, sub: Subscription, deps: Deps, pages: Pages, owner_pages: PerOwner) -> None:
        self.sub = sub
        self._deps = deps
        self._task: tasks.Watched | None = None
        self._signer = signing.Signer(sub.secret, sub.previous_secret, sub.previous_secret_expires)
        # A change of callback, headers or format goes through the API, which builds a new
        # supervisor: what is derived from them here stays true for this one's life.
        self._target = deps.sender.target(sub.uri, sub.headers)
        self._retry = 0  # failed attempts at the page in hand
        self._attempt: Attempt | None = None  # the 2xx that ``_commit`` records
        self._consumer = Consumer(
            sub.tid,
            pages,
            Permit(deps.pages, owner_pages, sub.owner),
            deps.clock,
            position=self._position,
            handle=self._deliver,
            commit=self._commit,
            page_size=render.page_size(sub),
        )
        # The manager wakes every supervisor of a trigger on each of its commits (a fan-out:
        # thousands): straight to the consumer's event, no call in between.
        self.wake = self._consumer.wake

    # -- ownership ---------------------------------------------------------------------------

    def start(self) -> None:
        # Two tasks of one supervisor would deliver the same page twice at once.
        assert self._task is None or self._task.done, f"{self.sub.id} is already running"
        self._task = self._deps.tasks.watch(TASK_PREFIX + self.sub.id, self._run, self._crashed)

    async def stop(self) -> None:
        """Cancel the task and wait for it; an undelivered page is delivered again later.
        Whoever calls it, however many at once, returns only once the task has ended."""
        task = self._task
        if task is not None:
            await task.stop()

    def _crashed(self, exc: BaseException, delay: float) -> None:
        # Status stays what it was (the restart resumes it), but the subscription must not
        # look healthy while nothing delivers: its read shows why. A 2xx clears it.
        self.sub.last_error = (
            f"delivery task crashed: {tasks.describe(exc)}, restarting in {delay:g} s"
        )

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            status = self.sub.status
            if status is Status.ACTIVE:
                self._retry = 0  # a restart after a crash starts the page's retries over
                await self._consumer.run()  # returns once a page failed it out of Active
            elif status is Status.FAILED:
                await self._recover()
            else:
                # Paused, Rejected, Suspended: nothing moves until an API action restarts us.
                await asyncio.Event().wait()

    def _position(self) -> int:
        return self.sub.cursor

    async def _deliver(self, page: Sequence[StoredEvent]) -> Result:
        """The consumer's handler: one attempt at ``page``, and what the consumer does next."""
        sub, deps = self.sub, self._deps
        answer, attempt = await self._send(page)
        verdict = policy.classify(answer.status, answer.refused)
        if verdict is Verdict.SUCCESS:
            self._retry = 0
            self._attempt = attempt
            return Outcome.COMMIT
        sub.last_error = answer.error
        if self._retry < sub.max_retries:
            self._retry += 1
            deps.metrics.retried()
            await deps.store.save_delivery(sub, attempt)
            retry_after = policy.parse_retry_after(answer.retry_after, deps.clock.now())
            return Retry(policy.retry_delay(deps.policy, self._retry, retry_after))
        self._retry = 0
        if sub.skip_errors:
            sub.cursor = page[-1].offset
            sub.skipped += len(page)
            await deps.store.save_delivery(sub, attempt)
            log.warning(
                "subscription %s skipped offsets %d-%d: %s",
                sub.id,
                page[0].offset,
                page[-1].offset,
                answer.error,
            )
            return Outcome.MOVED
        move = Move.FAIL if verdict is Verdict.TRANSIENT else Move.REJECT
        self._transition(move)
        if move is Move.FAIL:
            sub.failed_since = deps.clock.now()
        await deps.store.save_delivery(sub, attempt)
        await deps.notify(sub, move, answer.error or "delivery failed")
        return Outcome.STOP

    def _commit(self, page: Sequence[StoredEvent]) -> None:
        """After a 2xx: the cursor moves in memory now, and its write is queued, not awaited:
        the next delivery need not wait for this commit. The cursor only ever moves after a
        2xx, so losing the write in a crash re-delivers."""
        self._succeeded(page)
        self._deps.store.record_delivery(self.sub, self._attempt)

    async def _recover(self) -> None:
        """Failed: probe the callback on a growing interval with the next page; on success the
        subscription is Active again; after ``suspend_after`` in Failed it is Suspended."""
        sub, deps = self.sub, self._deps
        failed_since = sub.failed_since if sub.failed_since is not None else deps.clock.now()
        deadline = failed_since + deps.policy.suspend_after
        probe = 0
        while sub.status is Status.FAILED:
            remaining = deadline - deps.clock.now()
            if remaining <= 0:
                await self._suspend()
                return
            probe += 1
            await deps.clock.sleep(min(policy.probe_delay(deps.policy, probe), remaining))
            if deps.clock.now() >= deadline:
                await self._suspend()
                return
            page = await self._consumer.read(render.page_size(sub))
            if not page:
                continue
            answer, attempt = await self._send(page)
            succeeded = policy.classify(answer.status) is Verdict.SUCCESS
            deps.metrics.probed(succeeded)
            if succeeded:
                self._succeeded(page)
                self._transition(Move.RECOVER)
                sub.failed_since = None
                await deps.store.save_delivery(sub, attempt)
                await deps.notify(sub, Move.RECOVER, "the callback answered again")
                return
            sub.last_error = answer.error
            await deps.store.save_delivery(sub, attempt)

    async def _suspend(self) -> None:
        sub, store = self.sub, self._deps.store
        head = await store.trigger_head(sub.tid)
        lost = await store.count_between(sub.tid, sub.cursor, head)
        sub.lost += lost
        sub.cursor = max(sub.cursor, head)
        self._transition(Move.SUSPEND)
        sub.failed_since = None
        await store.save_subscription(sub)
        await self._deps.notify(sub, Move.SUSPEND, f"{lost} queued events were dropped")

    # -- helpers -----------------------------------------------------------------------------

    def _transition(self, move: Move) -> None:
        status = next_status(self.sub.status, move)
        assert status is not None
        self.sub.status = status
        self.sub.updated_at = rfc3339(self._deps.clock.now())

    def _succeeded(self, page: Sequence[StoredEvent]) -> None:
        sub = self.sub
        sub.cursor = page[-1].offset
        sub.delivered += len(page)
        sub.latest_succeed_offset = page[-1].offset
        sub.latest_succeed_event = page[-1].id
        sub.last_error = None

    async def _send(self, page: Sequence[StoredEvent]) -> tuple[Answer, Attempt]:
        sub, deps = self.sub, self._deps
        headers, body = render.render(sub, page)
        msg_id = render.message_id(sub, page)
        now = deps.clock.now()
        headers.update(self._signer.headers(msg_id, now, body))
        answer = await deps.sender.post(self._target, headers, body, sub.owner)
        sub.attempts += 1
        verdict = policy.classify(answer.status, answer.refused)
        deps.metrics.delivered(verdict, len(page), answer.latency_ms / 1000.0)
        attempt = Attempt(
            sub.attempts,
            rfc3339(now),
            page[0].offset,
            page[-1].offset,
            answer.status,
            answer.latency_ms,
            answer.error,
            msg_id,
        )
        return answer, attempt
