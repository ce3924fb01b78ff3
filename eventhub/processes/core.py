"""The process engine's state, shared by its parts (``engine.py`` says how they fit): what
each part reads and writes, set up once, and the one question every part asks (which
partition's work runs here)."""

from __future__ import annotations

import asyncio

from eventhub import tasks
from eventhub.catalog.service import Catalog
from eventhub.clock import Clock
from eventhub.consume.consumer import Consumer
from eventhub.consume.pages import Pages
from eventhub.delivery import http1, signing
from eventhub.delivery.leases import Leases, Local
from eventhub.delivery.owners import PerOwner
from eventhub.delivery.policy import RetryPolicy
from eventhub.delivery.sender import Sender
from eventhub.events import StoredEvent
from eventhub.log.base import ProcessStore
from eventhub.processes import partitions, starts
from eventhub.processes.definitions import Definition, Stored
from eventhub.processes.instances import Instance

START_PAGE = 100
_START_PAGES = 16  # start pages in memory at once, over every definition
OWNER = "processes"  # the start consumers' share of that budget, and calls' default owner


class Core:
    def __init__(
        self,
        store: ProcessStore,
        catalog: Catalog,
        sender: Sender,
        clock: Clock,
        retry: RetryPolicy,
        owner: tasks.Tasks,
        leases: Leases | None = None,
    ) -> None:
        self._leases: Leases = leases or Local()
        self._active: set[int] = set()  # the partitions whose work runs here
        self._to_reload: set[str | None] = set()  # definitions changed elsewhere (None: all)
        self._reload_wake = asyncio.Event()
        self._reloader: tasks.Watched | None = None
        self._regain: set[int] = set()  # partitions whose taking up failed: tried again
        self._store = store
        self._catalog = catalog
        self._starts = starts.Starts(catalog.index)  # the definitions' starts in the index
        self._sender = sender
        self._clock = clock
        self._retry = retry
        self._tasks = owner
        self.definitions: dict[str, Stored] = {}
        self._versions: dict[tuple[str, int], Definition] = {}
        self._signers: dict[str, signing.Signer] = {}
        self._targets: dict[tuple[str, int, int], http1.Target] = {}
        self._starters: dict[str, tuple[Consumer, tasks.Watched]] = {}
        self._by_tid: dict[int, set[str]] = {}
        self._runners: dict[str, tasks.Watched] = {}
        self._again: set[str] = set()  # woken while their task was still finishing
        self._fresh: dict[str, tuple[Instance, StoredEvent]] = {}  # handed over by a commit
        self._halting: set[asyncio.Task[None]] = set()  # tasks of instances cancelled elsewhere
        self._pages = Pages(store)
        self._permits = asyncio.Semaphore(_START_PAGES)
        self._shares = PerOwner(_START_PAGES)
        self._lock = asyncio.Lock()  # definition changes, one at a time
        self._timer: tasks.Watched | None = None
        self._timer_wake = asyncio.Event()
        self._planned: float | None = None  # when the timer means to wake next
        self._closed = False
        self._listening = False  # start() .. stop(): woken() drives instances

    def _holds(self, key: str) -> bool:
        """Whether the instance (or definition start) ``key`` is driven by this process."""
        return partitions.partition_of(key) in self._active

    async def _version(self, definition_id: str, version: int) -> Definition:
        """The definition an instance runs on (``starting.Starting`` reads it)."""
        raise NotImplementedError
