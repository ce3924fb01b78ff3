"""The hub: one object that owns the store, the catalogue, the outbound client and the
subscriptions, created at start-up and closed at shutdown. API handlers reach everything
through it.

The hub owns every long-lived task through one ``tasks.Tasks``, handed to each part as it
starts; ``health`` reports a crashed task and an unwritable database for ``/readyz``."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Literal

from eventhub import auth, backup, errors, notifications, retention, tasks
from eventhub.catalog.filters import TriggerIndex
from eventhub.catalog.service import Catalog
from eventhub.clock import Clock, SystemClock, rfc3339
from eventhub.delivery import egress, supervisor
from eventhub.delivery.manager import Subscriptions
from eventhub.delivery.policy import RetryPolicy
from eventhub.delivery.sender import Sender
from eventhub.delivery.states import Move
from eventhub.delivery.supervisor import Deps
from eventhub.events import NewEvent
from eventhub.follower import Follower
from eventhub.headwatch import HeadWatch
from eventhub.log import backend
from eventhub.log.base import Hooks, Store
from eventhub.log.records import KeyRecord, SourceRecord
from eventhub.models import Subscription
from eventhub.ops import logs
from eventhub.ops.metrics import Metrics
from eventhub.ops.rates import Rates
from eventhub.processes import definition_file, engine, lifecycle
from eventhub.processes.engine import Engine
from eventhub.processes.instances import Woken
from eventhub.settings import Settings

log = logging.getLogger(__name__)

# /readyz's write must commit within this, or the database counts as not writable.
READY_WRITE_TIMEOUT = 2.0
# /readyz is unauthenticated: however often it is asked, the database is written to at most
# once in this many seconds, and concurrent asks share that one write.
READY_WRITE_EVERY = 1.0


# Tasks named after a subscription or instance: /readyz names them to admins only.
_PRIVATE_TASKS = (supervisor.TASK_PREFIX, engine.RUNNER_PREFIX, engine.STARTER_PREFIX)


class Keep(enum.Enum):
    """A field of ``SourceChanges`` left out: it keeps its current value."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class SourceChanges:
    """What ``PUT /admin/sources/{name}`` changes; ``None``/``KEEP`` keep the current value."""

    secret: str | None = None
    require_signature: bool | None = None
    max_body_bytes: int | Literal[Keep.KEEP] | None = KEEP  # None: back to the default


class Hub:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.started = False
        self.metrics = Metrics(settings.metrics_per_subscription)
        self.head = HeadWatch()  # GET /events?wait= long polls wait on it
        # The store is built first (every part below needs it) with its hooks fixed: the
        # match index the catalogue fills, the head watch, and the hub's own methods, which
        # reach the parts built after the store (subscriptions, engine) when called.
        index = TriggerIndex()
        self._wired = False  # on_commit and on_emitted reach the parts: set by _start
        self.store: Store = backend.store_for(
            settings,
            self.clock,
            Hooks(
                matcher=index.match,
                on_commit=self._on_commit,
                on_appended=self.head.moved,
                step_names=self._step_name,
                on_instances=self._on_instances,
                on_emitted=self._on_emitted,
                on_subscription=self._on_subscription,
                on_change=self._on_change,
                reload_matcher=self._reload_matcher,
                on_instance_ids=self._on_instance_ids,
                on_instances_cancelled=self._on_instances_cancelled,
                on_definition=self._on_definition,
            ),
            observe_commit=self.metrics.committed,
        )
        self.keyring = auth.Keyring(())
        self.sources: dict[str, SourceRecord] = {}
        self._ingests_in_flight = 0
        self._keyless_in_flight = 0
        self.tasks = tasks.Tasks()
        self._writable: tuple[float, errors.Problem | None] | None = None  # (when, verdict)
        self._probing = asyncio.Lock()
        self.catalog = Catalog(self.store, self.clock, index)
        self.sender = Sender(
            settings.delivery_connections,
            settings.delivery_connect_timeout,
            settings.delivery_timeout,
            # The subscriptions' create/update checks use the sender's rules: one source.
            rules=egress.Rules.from_settings(
                settings.allowed_callback_networks, settings.callback_networks_only
            ),
            per_owner=settings.delivery_connections_per_owner,
        )
        policy = RetryPolicy(
            max_retries=settings.delivery_max_retries,
            initial_delay=settings.delivery_initial_delay,
            max_delay=settings.delivery_max_delay,
            retry_after_cap=settings.retry_after_cap,
            recovery_initial=settings.recovery_initial_delay,
            recovery_max=settings.recovery_max_delay,
            suspend_after=settings.suspend_after,
        )
        deps = Deps(
            self.store,
            self.sender,
            self.clock,
            policy,
            self._notify,
            self._notify_limit,
            asyncio.Semaphore(2 * settings.delivery_connections),
            tasks=self.tasks,
            metrics=self.metrics,
        )
        self.subscriptions = Subscriptions(
            deps,
            settings.max_subscriptions,
            settings.delivery_max_retries,
            settings.secret_rotation_overlap,
            backend.leases_for(settings, self.store),
        )
        self.processes = Engine(
            self.store,
            self.catalog,
            self.sender,
            self.clock,
            policy,
            self.tasks,
            backend.partitions_for(settings, self.store),
        )
        self.retention = retention.Retention(
            self.store,
            self.clock,
            settings.retention_days,
            settings.retention_bytes,
            settings.retention_interval,
        )
        # On PostgreSQL there is no file to copy: backups are pg_dump's (SnapshotUnsupported).
        self.backups = backup.Backups(
            self.store, None if backend.uses_postgres(settings) else settings.data
        )
        # The console's rate chart: samples of the counters above, never the ingest path.
        self.rates = Rates(self.metrics, self.clock)
        # Keys, sources and the catalogue other processes change (PostgreSQL).
        self.follower = Follower(self, backend.uses_postgres(settings))

    async def start(self) -> None:
        """Start every part; if one fails, what already started is stopped again, so a failed
        start leaves no task, thread or connection behind."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def _start(self) -> None:
        await self.store.open(self.tasks)
        self.keyring = auth.Keyring(await self.store.list_keys(), self.settings.admin_key)
        self.sources = {s.name: s for s in await self.store.list_sources()}
        if not self.keyring.has_admin():
            key = await self.create_key("admin", "admin", None)
            # Shown once, on the first start only: the store keeps just its hash.
            print(f"eventhub: created admin API key (shown once): {key}", flush=True)
        await self.catalog.load()
        await self.catalog.ensure(notifications.builtin_model(lifecycle.builtin_triggers()))
        if self.settings.catalog_file is not None:
            await self.catalog.load_file(self.settings.catalog_file)
        await self.sender.start(self.tasks)
        await self.subscriptions.start()
        await self.processes.start()
        if self.settings.catalog_file is not None:
            # After the models (a start may name a trigger of the same file) and after the
            # engine has loaded what is stored, so an unchanged definition stays as it is.
            changed = await definition_file.apply(
                self.processes,
                self.settings.catalog_file,
                self.sender.rules,
                auth.Principal(auth.ENV_ADMIN_ID, "admin", None),
            )
            if changed:
                log.info("process definitions from %s: %s", self.settings.catalog_file, changed)
        self._wired = True
        self.head.head = await self.store.head()
        # Last: the subscriptions and processes it must not outrun are loaded.
        self.retention.start(self.tasks)
        self.rates.start(self.tasks)

    def _on_commit(self, tids: set[int]) -> None:
        """After a commit that appended events of these triggers: wake their consumers (once
        every part has loaded what is stored, until the hub stops)."""
        if self._wired:
            self.subscriptions.on_commit(tids)
            self.processes.on_commit(tuple(tids))

    def _on_subscription(self, sub_id: str) -> None:
        """Another process changed this subscription (PostgreSQL): reload our copy."""
        if self._wired:
            self.subscriptions.changed_elsewhere(sub_id)

    def _on_change(self, kind: str, id_: str | None) -> None:
        """Another process changed a key, a source or the catalogue (PostgreSQL): reload it.
        From the store's open on: what start loads afterwards is newer anyway."""
        self.follower.changed(kind, id_)

    async def _reload_matcher(self) -> None:
        """Inside an append, when the catalogue moved in the database (PostgreSQL): the
        models, and the process definitions' own start filters (also in the match index)."""
        await self.catalog.load()
        await self.processes.refresh_starts()

    def _on_emitted(self, events: list[NewEvent]) -> None:
        """The lifecycle events a commit made: their log lines (from start to stop)."""
        if self._wired:
            logs.instance_transitions(events)

    def _step_name(self, definition_id: str, version: int, index: int) -> str | None:
        return self.processes.step_id(definition_id, version, index)

    def _on_instances(self, woken: list[Woken], earliest: float | None) -> None:
        self.processes.woken(woken, earliest)  # the engine ignores it outside start..stop

    def _on_instance_ids(self, ids: set[str], due: float | None) -> None:
        """Another process made these instances Running or set a due time (PostgreSQL)."""
        self.processes.nudged(ids, due)  # the engine ignores it outside start..stop

    def _on_instances_cancelled(self, ids: set[str]) -> None:
        """Another process cancelled these instances (PostgreSQL): stop their tasks here."""
        self.processes.cancelled_elsewhere(ids)

    def _on_definition(self, definition_id: str | None) -> None:
        """Another process saved or deleted this process definition (PostgreSQL)."""
        self.processes.changed_elsewhere(definition_id)

    async def stop(self) -> None:
        """Supervisors first (an in-flight delivery is abandoned; its cursor did not move, so
        it is delivered again after the restart), then the HTTP client, then the log, then
        any task still running. Each step runs whatever failed before it: a shutdown after a
        full disk or a crash still releases everything."""
        self._wired = False
        steps = (
            ("retention", self.retention.stop),
            ("rates", self.rates.stop),
            ("process engine", self.processes.stop),
            ("subscriptions", self.subscriptions.stop),
            ("follower", self.follower.stop),
            ("delivery client", self.sender.stop),
            ("store", self.store.close),
            ("background tasks", self.tasks.stop),
        )
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping the %s failed", name)

    async def health(self, detailed: bool = False) -> list[errors.Problem]:
        """What keeps the hub from being ready: the database not writable, a task down.

        Subscription ids are not shown to just anyone (a subscription is 404 to all but its
        owner and admins): unless ``detailed``, crashed supervisors are one counted line."""
        problems = []
        database = await self._database_problem()
        if database is not None:
            problems.append(database)
        crashed_supervisors = 0
        for name, what in self.tasks.health():
            if not detailed and name.startswith(_PRIVATE_TASKS):
                crashed_supervisors += 1
            else:
                problems.append(errors.Problem(f"{name}: {what}"))
        if crashed_supervisors:
            problems.append(
                errors.Problem(
                    f"{crashed_supervisors} subscription or instance task(s) crashed,"
                    " restarting (an admin key shows which)"
                )
            )
        return problems

    async def _database_problem(self) -> errors.Problem | None:
        loop = asyncio.get_running_loop()
        async with self._probing:
            if self._writable is not None and loop.time() - self._writable[0] < READY_WRITE_EVERY:
                return self._writable[1]
            problem = None
            try:
                async with asyncio.timeout(READY_WRITE_TIMEOUT):
                    await self.store.check_writable()
            except errors.InsufficientStorage:
                problem = errors.Problem("database: not writable, the disk is full")
            except TimeoutError:
                problem = errors.Problem(
                    f"database: a write did not commit within {READY_WRITE_TIMEOUT:g} s"
                )
            except Exception as exc:
                log.warning("readiness write failed", exc_info=exc)
                problem = errors.Problem(f"database: not writable ({type(exc).__name__})")
            self._writable = (loop.time(), problem)
            return problem

    async def check_ready(self, detailed: bool = False) -> None:
        problems = await self.health(detailed)
        if problems:
            raise errors.NotReady("not ready: " + "; ".join(p.reason for p in problems), problems)

    def now_rfc3339(self) -> str:
        return rfc3339(self.clock.now())

    # -- lifecycle notifications -------------------------------------------------------------

    async def _notify(self, sub: Subscription, move: Move | None, reason: str) -> None:
        await self.store.append([notifications.transition(sub, move, reason, self.clock.now())])
        # Logged once the notification is in the log, as the transition it records is.
        status = str(sub.status) if move is not Move.DELETE else None
        logs.subscription_transition(
            sub.id, sub.owner, notifications.NAMES[move], status, sub.cursor, reason
        )

    async def _notify_limit(self, who: auth.Principal, limit: int) -> None:
        data = {"owner": who.key_id, "limit": limit}
        event = notifications.event(notifications.LIMIT_REACHED, self.clock.now(), data)
        await self.store.append([event])

    # -- admission control -------------------------------------------------------------------

    def enter_ingest(self, keyed: bool = True) -> None:
        """Take an ingest slot, or raise 429. Requests without an API key (signed by a named
        source) draw from their own, smaller pool, so that however many arrive they never
        take a slot from a keyed producer (SPEC §8)."""
        if keyed:
            if self._ingests_in_flight >= self.settings.max_concurrent_ingests:
                raise errors.TooManyRequests(
                    "too many concurrent ingest requests; retry later",
                    self.settings.retry_after_seconds,
                )
            self._ingests_in_flight += 1
        else:
            if self._keyless_in_flight >= self.settings.max_unauthenticated_ingests:
                raise errors.TooManyRequests(
                    "too many concurrent ingest requests without an API key; retry later",
                    self.settings.retry_after_seconds,
                )
            self._keyless_in_flight += 1

    def leave_ingest(self, keyed: bool = True) -> None:
        if keyed:
            self._ingests_in_flight -= 1
        else:
            self._keyless_in_flight -= 1

    # -- keys and sources --------------------------------------------------------------------

    async def create_key(self, name: str, role: str, sources: tuple[str, ...] | None) -> str:
        if role not in auth.ROLES:
            raise errors.InvalidRequest(f"role must be one of {', '.join(auth.ROLES)}")
        key_id, key = auth.new_key()
        record = KeyRecord(key_id, auth.hash_key(key), name, role, sources, self.now_rfc3339())
        await self.store.put_key(record)
        self.keyring.add(record)
        return key

    async def revoke_key(self, key_id: str) -> None:
        if not await self.store.revoke_key(key_id, self.now_rfc3339()):
            raise errors.NotFound(f"no live API key with id {key_id!r}")
        self.keyring.remove(key_id)
        # After the revocation is persisted: if the hub dies before this finishes, the next
        # start pauses what is left (``Subscriptions.start``).
        await self.subscriptions.revoke(key_id)

    async def put_source(self, name: str, changes: SourceChanges) -> tuple[SourceRecord, bool]:
        """Create or update a source: what ``changes`` leaves out keeps its current value (a
        new source gets a generated secret, no required signature and the default body
        limit). Returns the record and whether its secret was generated here."""
        previous = self.sources.get(name)
        secret = changes.secret
        generated = secret is None and previous is None
        if secret is None:
            secret = previous.secret if previous is not None else auth.new_secret()
        require_signature = changes.require_signature
        if require_signature is None:
            require_signature = previous.require_signature if previous is not None else False
        limit = changes.max_body_bytes
        if limit is KEEP:
            limit = previous.max_body_bytes if previous is not None else None
        record = SourceRecord(
            name,
            secret,
            require_signature,
            previous.created_at if previous else self.now_rfc3339(),
            limit if isinstance(limit, int) else None,
        )
        await self.store.put_source(record)
        self.sources[name] = record
        self.follower.edited_source(name)
        return record, generated

    async def delete_source(self, name: str) -> None:
        if not await self.store.delete_source(name):
            raise errors.NotFound(f"no source {name!r}")
        self.sources.pop(name, None)
        self.follower.edited_source(name)
