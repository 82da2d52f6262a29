"""Group commit (services/group_commit.py): concurrent units share a transaction, each waits for its own."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from carnet.api.app import Services
from carnet.services.group_commit import GroupCommit
from carnet.services.ports import StoreSession

NOW = datetime(2026, 12, 6, tzinfo=UTC)
WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def checkpoint(shard: int) -> Callable[[StoreSession], int]:
    """A unit writing one row (a checkpoint of its own shard) and returning its shard."""

    def work(session: StoreSession) -> int:
        session.put_checkpoint(shard, 1, NOW, f"note {shard}".encode())
        return shard

    return work


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s) for a condition another thread brings about."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def run_concurrently(
    group: GroupCommit, first: Callable[[StoreSession], int], others: int, *, isolate: bool = True
) -> list[object]:
    """Run ``first`` (which holds its batch open until the others queue) and ``others`` more units."""
    results: list[object] = [None] * (others + 1)

    def call(index: int, work: Callable[[StoreSession], int]) -> None:
        WHO.set(f"caller {index}")
        try:
            results[index] = group.run(work, isolate=isolate)
        except Exception as error:  # the test looks at what each caller got
            results[index] = error

    leader = threading.Thread(target=call, args=(0, first))
    leader.start()
    threads = [leader]
    wait_until(lambda: group.batches == 0 and group.pending == 0 and started.is_set())
    for index in range(1, others + 1):
        work = checkpoint(index) if index != 3 else failing
        thread = threading.Thread(target=call, args=(index, work))
        thread.start()
        threads.append(thread)
    wait_until(lambda: group.pending == others)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    return results


started = threading.Event()
release = threading.Event()


def failing(session: StoreSession) -> int:
    """A unit that writes, then fails."""
    session.put_checkpoint(3, 1, NOW, b"never")
    raise ValueError("unit 3 fails")


@pytest.fixture(autouse=True)
def _fresh_events() -> None:
    started.clear()
    release.clear()


def test_concurrent_units_share_one_commit_and_a_failure_stays_its_own(services: Services) -> None:
    """Seven units queued behind a batch commit together; the failing one fails alone, the rest commit."""
    group = GroupCommit(services.store)

    def first(session: StoreSession) -> int:
        started.set()
        assert release.wait(timeout=10)
        session.put_checkpoint(0, 1, NOW, b"note 0")
        return 0

    results = run_concurrently(group, first, 7)
    assert results[0] == 0
    assert [r for i, r in enumerate(results) if i not in (0, 3)] == [1, 2, 4, 5, 6, 7]
    assert isinstance(results[3], ValueError)
    assert "unit 3 fails" in str(results[3])
    # The leader's batch (1 unit), then the batch of seven: the failing unit undone alone (its
    # savepoint), the six others committed together.
    assert group.units == 7
    assert group.batches == 2
    with services.store.session() as session:
        assert [session.latest_checkpoint(shard) for shard in range(8)] == [
            (1, f"note {shard}".encode()) if shard != 3 else None for shard in range(8)
        ]


def test_a_unit_without_savepoint_that_fails_has_its_batch_run_again_each_alone(services: Services) -> None:
    """Units without savepoints share a batch; when one raises, each runs again alone and only it fails."""
    group = GroupCommit(services.store)

    def first(session: StoreSession) -> int:
        started.set()
        assert release.wait(timeout=10)
        return 0

    results = run_concurrently(group, first, 7, isolate=False)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(results[3], ValueError)
    # The leader alone; the batch of seven abandoned when unit 3 raised (its write and those of
    # units 1 and 2 before it rolled back), then six transactions of one unit each.
    assert (group.batches, group.units) == (7, 7)
    with services.store.session() as session:
        assert [session.latest_checkpoint(shard) for shard in range(1, 8)] == [
            (1, f"note {shard}".encode()) if shard != 3 else None for shard in range(1, 8)
        ]


def test_units_of_a_batch_commit_together_in_their_callers_context(services: Services) -> None:
    """Units queued during a commit share the next one, each running with its own caller's context."""
    group = GroupCommit(services.store)
    seen: dict[int, str] = {}

    def first(session: StoreSession) -> int:
        started.set()
        assert release.wait(timeout=10)
        return 0

    def tracing(index: int) -> Callable[[StoreSession], int]:
        def work(session: StoreSession) -> int:
            seen[index] = WHO.get()
            return checkpoint(index)(session)

        return work

    results: list[object] = [None] * 6

    def call(index: int, work: Callable[[StoreSession], int]) -> None:
        WHO.set(f"caller {index}")
        results[index] = group.run(work)

    threads = [threading.Thread(target=call, args=(0, first))]
    threads[0].start()
    wait_until(started.is_set)
    for index in range(1, 6):
        threads.append(threading.Thread(target=call, args=(index, tracing(index))))
        threads[-1].start()
    wait_until(lambda: group.pending == 5)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [0, 1, 2, 3, 4, 5]
    assert seen == {i: f"caller {i}" for i in range(1, 6)}
    assert (group.batches, group.units) == (2, 6)  # the leader alone, then the five in one transaction
    with services.store.session() as session:
        assert all(session.latest_checkpoint(shard) == (1, f"note {shard}".encode()) for shard in range(1, 6))


def test_a_lone_unit_commits_before_run_returns(services: Services) -> None:
    """Without concurrency a unit is its own batch, durable when ``run`` returns."""
    group = GroupCommit(services.store)
    assert group.run(checkpoint(9)) == 9
    with services.store.session() as session:
        assert session.latest_checkpoint(9) == (1, b"note 9")
    assert (group.batches, group.units, group.pending) == (1, 1, 0)


def test_units_queued_while_the_leader_waits_for_the_writer_lock_join_its_batch(services: Services) -> None:
    """On SQLite the leader takes its batch once it holds the writer lock, not before.

    While another writer (the other worker process) holds the lock, the units queued behind the
    waiting leader commit in its batch: one batch of three, not the leader alone then the others.
    """
    if not services.store.single_writer:
        pytest.skip("PostgreSQL has no writer lock to wait for")
    group = GroupCommit(services.store)
    holding, done = threading.Event(), threading.Event()

    def other_writer() -> None:
        with services.store.session(write=True):
            holding.set()
            assert done.wait(timeout=10)

    holder = threading.Thread(target=other_writer)
    holder.start()
    assert holding.wait(timeout=10)
    results: list[object] = [None] * 3

    def call(index: int) -> None:
        results[index] = group.run(checkpoint(index))

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    wait_until(lambda: group.pending == 1)  # the leader's own unit, still queued while it waits
    threads += [threading.Thread(target=call, args=(index,)) for index in (1, 2)]
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: group.pending == 3)
    done.set()
    for thread in [holder, *threads]:
        thread.join(timeout=30)
    assert results == [0, 1, 2]
    assert (group.batches, group.units) == (1, 3)
