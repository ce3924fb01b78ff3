"""The process engine's instance runner (SPEC §6.2): a task per *Running* instance carries
out its steps one at a time and ends when the instance sleeps or finishes.

A call step is sent like a delivery (the shared sender: egress rules, per-owner share, the
retry policy), signed with the definition's secret, with a ``ce-id`` stable per (instance,
step): a crash repeats it identically. A wait step takes a buffered event or puts the
instance to sleep; a sleeping (*Waiting*) instance is a row and nothing else: no task, no
timer. Every change of an instance is a compare-and-set in the store, so a cancel, a wake,
the timer and a running task can race and the first commit wins; the others find the
instance moved and stop."""

from __future__ import annotations

import logging
from typing import Any

from eventhub import errors
from eventhub.clock import rfc3339
from eventhub.codec import jsontext
from eventhub.delivery import http1, policy, signing
from eventhub.delivery.policy import Verdict
from eventhub.events import StoredEvent
from eventhub.processes import core, lifecycle, timer
from eventhub.processes.definitions import Call, Definition, Wait
from eventhub.processes.instances import (
    CALLED,
    RETRYING,
    Advanced,
    Entry,
    Instance,
    Opened,
    State,
    Then,
    Woken,
)

log = logging.getLogger(__name__)

RUNNER_PREFIX = "instance-"  # task names: /readyz shows these ids only to an admin
# A call's answer is read up to this many bytes for its variables; a longer one is taken as
# a success that sets none (said in the history).
MAX_ANSWER_BYTES = 1024 * 1024


class Runner(timer.Timer):
    async def cancel(self, instance_id: str, reason: str = "cancelled") -> Instance:
        """Running or Waiting -> Cancelled; 404 if there is no such instance, 409 if it has
        finished. A call in flight is abandoned (its receiver may still have it)."""
        runner = self._runners.get(instance_id)
        self._fresh.pop(instance_id, None)
        if runner is not None:
            await runner.stop()
            if self._runners.get(instance_id) is runner:
                del self._runners[instance_id]
        ended = await self._store.finish_instance(
            instance_id, (State.RUNNING, State.WAITING), State.CANCELLED, reason
        )
        if ended is None:
            found = await self._store.get_instance(instance_id)
            if found is None:
                raise errors.NotFound(f"no instance {instance_id!r}")
            raise errors.Conflict(f"instance {instance_id} is {found.state}: nothing to cancel")
        log.info("instance %s cancelled: %s", instance_id, reason)
        return ended

    def woken(self, woken: list[Woken], earliest: float | None) -> None:
        """The store's word after a commit (its ``on_instances`` hook, through the hub): these
        instances woke (as they are now, with the event that woke them); something is
        buffered until ``earliest``. Ignored before ``start`` (which drives every running
        instance it reads) and after ``stop``."""
        if not self._listening:
            return
        for found in woken:
            self._drive(found.instance.id, (found.instance, found.cause))
        if earliest is not None:
            self._due(earliest)

    def _drive(self, instance_id: str, fresh: tuple[Instance, StoredEvent] | None = None) -> None:
        """Make sure a task carries ``instance_id`` on (it is Running); ``fresh``: the instance
        as just committed and its cause, so the task need not read them back."""
        if self._closed or not self._holds(instance_id):
            return  # another process's (``_gain`` there reads it from the database)
        if instance_id in self._runners:
            self._again.add(instance_id)  # it may be on its way out: it looks again first
            return
        if fresh is not None:
            self._fresh[instance_id] = fresh
        self._runners[instance_id] = self._tasks.watch(
            RUNNER_PREFIX + instance_id, lambda: self._run(instance_id)
        )

    async def _run(self, instance_id: str) -> None:
        """The task of one Running instance (restarted from the stored state after a crash,
        so a call in flight then is sent again, with the same ``ce-id``)."""
        while True:
            self._again.discard(instance_id)
            # What the commit that made it Running handed over, only the first time: after a
            # crash or a second look, the stored state.
            fresh = self._fresh.pop(instance_id, None)
            if fresh is None:
                instance, cause = await self._store.load_instance(instance_id), None
            else:
                instance, cause = fresh
            if instance is not None and instance.state is State.RUNNING:
                await self._steps(instance, cause)
            if instance_id not in self._again:
                # No await between the look and the leaving: a wake after this starts a task.
                self._runners.pop(instance_id, None)
                return

    async def _steps(self, instance: Instance, cause: StoredEvent | None) -> None:
        """Carry ``instance`` on until it sleeps, finishes, or was moved by someone else.
        ``cause``: the event at ``instance.last_offset``, if at hand."""
        store = self._store
        while True:
            definition = await self._version(instance.definition_id, instance.version)
            if instance.step >= len(definition.steps):
                await store.finish_instance(
                    instance.id, (State.RUNNING,), State.COMPLETED, step=instance.step
                )
                return
            step = definition.steps[instance.step]
            if isinstance(step.action, Call):
                if cause is None or cause.offset != instance.last_offset:
                    cause = await store.read_event(instance.last_offset)
                advanced = await self._call(instance, definition, step.action, cause)
                if advanced is None or not advanced.moved or advanced.completed:
                    return
                opened = advanced.opened
                if opened is None:  # the next step is a call, or a wait the store did not open
                    continue
            else:
                assert isinstance(step.action, Wait)
                opened = await store.open_wait(
                    instance.id, instance.step, step.action.type, step.action.timeout
                )
                if opened is None:
                    return  # cancelled meanwhile
            if not self._past_wait(instance, definition, opened):
                return  # asleep: a row, no task

    def _past_wait(self, instance: Instance, definition: Definition, opened: Opened) -> bool:
        """After the store opened the wait at ``instance.step``: True if a buffered event
        took the instance past it (``instance`` follows), False if it sleeps."""
        if opened.offset is None:
            action = definition.steps[instance.step].action
            assert isinstance(action, Wait)
            if action.timeout is not None:
                self._due(self._clock.now() + action.timeout)
            return False
        instance.step += 1
        instance.variables = opened.variables
        instance.last_offset = opened.offset
        return True

    async def _call(
        self, instance: Instance, definition: Definition, call: Call, cause: StoredEvent | None
    ) -> Advanced | None:
        """One call step, retried per the delivery policy. On success the instance moves on,
        and, in the same commit, completes or opens its next wait when that is what follows
        (``instance`` follows to the step after the call). None when the retries ran out
        (Failed) or someone else moved the instance."""
        store, clock = self._store, self._clock
        index = instance.step
        step_id = definition.steps[index].id
        stored = self.definitions.get(definition.id)
        owner = stored.owner if stored is not None else core.OWNER
        target = self._target(definition, index, call)
        retry = 0
        while True:
            now = clock.now()
            headers, body = lifecycle.render_call(
                instance.id, definition.id, step_id, index, instance.variables, cause, now
            )
            message_id = lifecycle.call_id(instance.id, index)
            headers.update(self._signer(definition.id).headers(message_id, now, body))
            answer = await self._sender.post(target, headers, body, owner, MAX_ANSWER_BYTES)
            verdict = policy.classify(answer.status, answer.refused)
            if verdict is Verdict.SUCCESS:
                variables, detail = _answered(instance.variables, answer.status, answer.body)
                entry = Entry(rfc3339(clock.now()), step_id, CALLED, detail=detail)
                advanced = await store.advance_instance(
                    instance.id, index, variables, [entry], _then(definition, index + 1)
                )
                if advanced.moved:
                    instance.step += 1
                    instance.variables = variables
                return advanced
            error = answer.error or "call failed"
            if retry < self._retry.max_retries:
                retry += 1
                await store.note_instance(
                    instance.id, [Entry(rfc3339(clock.now()), step_id, RETRYING, detail=error)]
                )
                retry_after = policy.parse_retry_after(answer.retry_after, clock.now())
                await clock.sleep(policy.retry_delay(self._retry, retry, retry_after))
                continue
            ended = await store.finish_instance(
                instance.id,
                (State.RUNNING,),
                State.FAILED,
                f"step {step_id}: {error} (after {retry + 1} attempts)",
                step=index,
            )
            if ended is not None:
                log.warning("instance %s failed at step %s: %s", instance.id, step_id, error)
            return None

    def _target(self, definition: Definition, index: int, call: Call) -> http1.Target:
        key = (definition.id, definition.version, index)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._sender.target(call.uri, call.headers)
        return target

    def _signer(self, definition_id: str) -> signing.Signer:
        signer = self._signers.get(definition_id)
        if signer is None:
            # A definition deleted with its instances cancelled: a straggler's last call
            # cannot be signed with a secret that is gone.
            raise errors.NotFound(f"process definition {definition_id!r} was deleted")
        return signer


def _then(definition: Definition, index: int) -> Then | None:
    """What the store may do in a call's own commit after it: complete the instance past its
    last step, or open the wait that follows. A call that follows needs this task."""
    if index >= len(definition.steps):
        return Then(complete=True)
    action = definition.steps[index].action
    if isinstance(action, Wait):
        return Then(wait_type=action.type, timeout=action.timeout)
    return None


def _answered(
    variables: dict[str, Any], status: int | None, body: bytes | None
) -> tuple[dict[str, Any], str]:
    """The variables after a call's 2xx answer (a JSON object's members merge in), and the
    history's word on it."""
    detail = f"HTTP {status}"
    if body is None:
        return variables, f"{detail}; the answer was over {MAX_ANSWER_BYTES} bytes, not read"
    if not body.strip():
        return variables, detail
    try:
        value = jsontext.loads(body)
    except (errors.InvalidJson, RecursionError):
        return variables, f"{detail}; the answer is not JSON, no variables taken"
    if not isinstance(value, dict):
        return variables, f"{detail}; the answer is not a JSON object, no variables taken"
    return {**variables, **value}, f"{detail}; {len(value)} variable(s) set"
