"""Group commit: the small write transactions of concurrent callers share one durable commit.

Each caller hands :meth:`GroupCommit.run` a unit of work (a function of a write session) and
waits for **its own** unit to be committed durably before it goes on — nothing is acknowledged
before its commit. While one batch commits, the units that arrive queue up; the next batch
carries them all in one transaction: one ``BEGIN IMMEDIATE`` / head-row lock and one fsync for
many entries, instead of one each, and no waiting in the database's lock for one's turn.

The first caller to find no batch in progress leads: it opens a write transaction, only then
takes up to ``max_batch`` queued units (its own first; on SQLite the units queued while it waited
for the writer lock join it: batches of 2.36 reads instead of 2.03 under ``bench/split.py``,
2026-12-07), runs them in that transaction and commits, wakes their callers, then hands
the lead to the oldest unit still queued (so no caller serves others for long). Each unit runs
in its caller's context (``contextvars``: the caller, the deadline), exactly as if it had run in
the caller's own thread.

Each unit of a batch runs in a savepoint of its own: a unit that raises has its writes undone
alone and gets its own error once the batch has committed, the others committing as if it had
never run. A unit that needs none (``isolate=False``: it raises only where nothing works, such as
a journal append, or it isolates its own writes) runs without one — a savepoint and its release
cost more than a journal entry's statements — and the writes of such units can be merged (one
``executemany`` for the journal entries of a batch); should one raise anyway, the whole batch is
abandoned and run again as below. If the commit itself fails, nothing of the batch was
committed: each of its units is then run again alone, in a transaction of its own, so a failure
reaches only the callers it belongs to; but if the commit was made and only its flush to disk
failed (``Store.session`` called ``committed``), every unit of the batch gets that error and none
runs again (its writes are in the store, maybe not on disk; nobody is answered). A unit must therefore be safe to run twice when its first run was rolled back (no
side effect outside the session). It is a general mechanism: the access journal of reads uses it
(``Gate``), and any use case made of small independent writes can.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from carnet.services.ports import Store, StoreSession

T = TypeVar("T")

DEFAULT_MAX_BATCH = 128


@dataclass(eq=False, slots=True)
class _Unit(Generic[T]):
    work: Callable[[StoreSession], T]
    context: contextvars.Context
    isolate: bool = True
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    result: T | None = None
    error: BaseException | None = None

    def run(self, session: StoreSession) -> T:
        return self.context.run(self.work, session)

    def finish(self, result: T | None, error: BaseException | None) -> None:
        self.result, self.error, self.finished = result, error, True
        self.wake.set()


class GroupCommit:
    """Runs the write units of concurrent callers in shared transactions; thread-safe."""

    def __init__(self, store: Store, *, max_batch: int = DEFAULT_MAX_BATCH, shared: bool = True) -> None:
        self.store = store
        self.max_batch = max_batch
        #: False: each unit runs at once in a transaction of its own, concurrently with the others
        #: (a database that writes transactions side by side and groups their flushes itself).
        self.shared = shared
        self._lock = threading.Lock()
        self._queue: list[_Unit[Any]] = []
        self._leading = False
        #: Batches committed and units they carried (for the benchmarks and tests).
        self.batches = 0
        self.units = 0

    @property
    def pending(self) -> int:
        """How many units wait for a batch (the one committing now not counted)."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Callable[[StoreSession], T], *, isolate: bool = True) -> T:
        """Run ``work(session)`` in a write transaction (maybe shared); return once it is committed.

        ``isolate=False``: no savepoint of its own in a shared transaction (see the module's
        docstring); if it raises there, its batch is run again, each unit alone.

        Raises:
            Whatever ``work`` raised when run alone, or the store's error on committing it.
        """
        if not self.shared:
            with self.store.session(write=True) as session:
                result = work(session)
            with self._lock:
                self.batches += 1
                self.units += 1
            return result
        unit: _Unit[T] = _Unit(work, contextvars.copy_context(), isolate)
        with self._lock:
            self._queue.append(unit)
            if not self._leading:  # no batch in progress: the queue held nothing, this unit leads
                self._leading = True
                unit.wake.set()
        while True:
            unit.wake.wait()
            if unit.finished:
                break
            self._lead()
        if unit.error is not None:
            raise unit.error
        return cast(T, unit.result)

    def _lead(self) -> None:
        """Commit one batch (the leader's unit first), then hand the lead on."""
        batch: list[_Unit[Any]] = []
        try:
            self._commit(batch)
        finally:
            with self._lock:
                for unit in batch:
                    if not unit.finished:  # only when _commit itself was interrupted
                        unit.finish(None, RuntimeError("the group commit was interrupted"))
                if self._queue:
                    self._queue[0].wake.set()  # not finished: woken, it leads
                else:
                    self._leading = False

    def _take(self, batch: list[_Unit[Any]]) -> None:
        """Move up to ``max_batch`` queued units (the leader's first) into ``batch``."""
        with self._lock:
            batch.extend(self._queue[: self.max_batch])
            del self._queue[: self.max_batch]

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        """Run the queued units in one write transaction and commit; each gets its own outcome.

        The units are taken once the transaction is open, so on SQLite after the writer lock:
        those queued while the leader waited for it (the other worker process's batch) join this
        batch instead of waiting for the next one.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        flushing = False

        def on_commit() -> None:
            nonlocal flushing
            flushing = True

        try:
            with self.store.session(write=True, committed=on_commit) as session:
                self._take(batch)
                if len(batch) == 1:  # alone: its error, or the commit's, is its own
                    outcomes.append((batch[0].run(session), None))
                else:
                    for unit in batch:
                        if not unit.isolate:  # raising abandons the batch: each unit runs alone below
                            outcomes.append((unit.run(session), None))
                            continue
                        try:
                            with session.savepoint():
                                outcomes.append((unit.run(session), None))
                        except Exception as failure:  # undone alone; reported to its caller after the commit
                            outcomes.append((None, failure))
        except BaseException as failure:
            if len(batch) == 1 or (flushing and batch):
                # Alone, or committed with its flush to disk failed (not run again, none answered).
                for unit in batch:
                    unit.finish(None, failure)
                return
            if not isinstance(failure, Exception):
                raise
            if not batch:  # the transaction could not be opened: each unit tries alone below
                self._take(batch)
            # else the batch failed: each unit is run again alone below
        else:
            committed = sum(1 for _, failed in outcomes if failed is None)
            self.batches += 1 if committed else 0
            self.units += committed
            for unit, (result, failed) in zip(batch, outcomes, strict=True):
                unit.finish(result, failed)
            return
        for unit in batch:
            try:
                with self.store.session(write=True) as session:
                    result = unit.run(session)
            except BaseException as error:  # handed to its own caller, raised in its thread
                unit.finish(None, error)
            else:
                self.batches += 1
                self.units += 1
                unit.finish(result, None)
