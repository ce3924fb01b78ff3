"""The owner of every long-lived background task: named, referenced, watched, restarted.

A part that needs a task running for its lifetime (the log writer, the checkpointer, the
pool sweeper, each subscription's supervisor) asks ``Tasks.watch`` for one and keeps the
``Watched`` handle it gets back, to stop it on close. A task that crashes is never silently
gone: its traceback is logged, it is restarted after a growing delay (``restart_delay``), and
while it waits to restart ``Tasks.health`` names it, so ``/readyz`` answers 503. A task that
returns on its own has finished its work and is simply forgotten.

The restart delay runs on the loop's own time, not the injected ``Clock``: it is an
operational pause, not domain time, and a test's manual clock must not hold a restart back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
# A run that lasted this long was healthy: its next crash starts the delays over.
HEALTHY_AFTER = 60.0

Run = Callable[[], Awaitable[None]]
# (what went wrong, seconds until the restart) -> e.g. shown on the subscription
OnCrash = Callable[[BaseException, float], None]


def restart_delay(crashes: int, first: float = FIRST_DELAY, most: float = MAX_DELAY) -> float:
    """Seconds to wait before restarting a task that crashed ``crashes`` times in a row."""
    if crashes <= 0:
        return 0.0
    return float(min(most, first * 2 ** (crashes - 1)))


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Watched:
    """One task of ``Tasks``: ``run`` again and again until it returns or is stopped."""

    def __init__(self, owner: Tasks, name: str, run: Run, on_crash: OnCrash | None) -> None:
        self.name = name
        self.problem: str | None = None  # set while crashed and waiting to restart
        self.crashes = 0
        self._owner = owner
        self._run = run
        self._on_crash = on_crash
        self._task = asyncio.create_task(self._watch(), name=name)
        self._task.add_done_callback(self._gone)

    @property
    def done(self) -> bool:
        return self._task.done()

    async def wait(self) -> None:
        """Until the task has returned on its own (or was stopped)."""
        await asyncio.wait([self._task])

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if not self._task.done():
            self._task.cancel()
        await asyncio.wait([self._task])

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._run()
                return
            except Exception as exc:  # CancelledError is a BaseException: a stop ends us
                if loop.time() - started >= HEALTHY_AFTER:
                    self.crashes = 0
                self.crashes += 1
                delay = restart_delay(self.crashes)
                # Only the exception's type: /readyz is unauthenticated, the log has the rest.
                self.problem = f"crashed ({type(exc).__name__}), restarting in {delay:g} s"
                log.error("task %s crashed; restarting in %g s", self.name, delay, exc_info=exc)
                if self._on_crash is not None:
                    try:
                        self._on_crash(exc, delay)
                    except Exception:
                        log.exception("the crash hook of task %s failed", self.name)
                await asyncio.sleep(delay)
                self.problem = None
                log.info("task %s restarting after crash %d", self.name, self.crashes)

    def _gone(self, task: asyncio.Task[None]) -> None:
        self._owner._forget(self)


class Tasks:
    """Every watched task of one hub; ``health`` lists what is wrong with them."""

    def __init__(self) -> None:
        self._watched: set[Watched] = set()

    def watch(self, name: str, run: Run, on_crash: OnCrash | None = None) -> Watched:
        """Start ``run`` as a task named ``name``, restarted with backoff whenever it raises.
        The caller keeps the handle and stops it when its part closes."""
        watched = Watched(self, name, run, on_crash)
        self._watched.add(watched)
        return watched

    def _forget(self, watched: Watched) -> None:
        self._watched.discard(watched)

    def health(self) -> list[tuple[str, str]]:
        """(task name, what is wrong) for every task that is down right now."""
        return sorted((w.name, w.problem) for w in self._watched if w.problem is not None)

    def names(self) -> list[str]:
        return sorted(w.name for w in self._watched)

    async def stop(self) -> None:
        """Stop whatever is still running: the last step of a shutdown, after each part
        stopped its own tasks (a part whose close failed may have left one)."""
        await asyncio.gather(*(w.stop() for w in list(self._watched)))
