"""The SQL implementation of the ``Store`` port (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    delete,
    insert,
    intersect,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.services.ports import StoredVersion
from carnet.store.apps import AppSessionMixin
from carnet.store.connected import all_plain, first_plain, utc
from carnet.store.credentials import CredentialSessionMixin
from carnet.store.distribution import is_citus
from carnet.store.engine import BEGIN_MODE, wal_sync
from carnet.store.feeds import FeedMessageSessionMixin, FeedOfferSessionMixin, FeedSessionMixin
from carnet.store.journal import JournalSessionMixin
from carnet.store.journal_logs import JournalLogs
from carnet.store.keys import KEY_COLUMNS, KeySessionMixin, stored_key
from carnet.store.message_notices import MessageNoticeSessionMixin
from carnet.store.outbox import OutboxSessionMixin
from carnet.store.portal import PortalSessionMixin
from carnet.store.representations import RepresentationSessionMixin
from carnet.store.research import ResearchSessionMixin
from carnet.store.tables import (
    identities,
    patient_keys,
    resource_locations,
    resource_places,
    resource_versions,
    resources,
    search_tokens,
)
from carnet.store.wal_sync import SYNC_AFTER
from carnet.store.writer_lock import WriterLock, sqlite_file, writer_first

_VERSION_COLUMNS = (
    resource_versions.c.patient_id,
    resource_versions.c.resource_type,
    resource_versions.c.resource_id,
    resource_versions.c.version_id,
    resource_versions.c.last_updated,
    resource_versions.c.deleted,
    resource_versions.c.sealed,
)


# The statements on the hot path are built once; only their parameters change per call.
# By the resource's id alone, in the locations (on Citus, one shard of their own group).
_LOCATE = select(resource_locations.c.patient_id).where(
    resource_locations.c.resource_id == bindparam("i"), resource_locations.c.resource_type == bindparam("t")
)
# By the log key an id starts with (on Citus, one shard of the record's group).
_PLACE = select(resource_places.c.patient_id).where(
    resource_places.c.log_key == bindparam("k"),
    resource_places.c.resource_id == bindparam("i"),
    resource_places.c.resource_type == bindparam("t"),
)
# Joins each resource to its current version.
_IS_CURRENT = and_(
    resources.c.patient_id == resource_versions.c.patient_id,
    resources.c.resource_type == resource_versions.c.resource_type,
    resources.c.resource_id == resource_versions.c.resource_id,
    resources.c.version_id == resource_versions.c.version_id,
)
_CURRENT = (
    select(*_VERSION_COLUMNS)
    .join(resources, _IS_CURRENT)
    .where(
        resources.c.patient_id == bindparam("p"),
        resources.c.resource_type == bindparam("t"),
        resources.c.resource_id == bindparam("i"),
    )
)

# ``_LOCATE`` and ``_CURRENT`` in one query, where the locations live beside the records' tables.
# With the record's key row (``patient_keys``), which a read unwraps next: one query, not two.
_LOCATE_CURRENT = (
    select(resource_locations.c.patient_id, *_VERSION_COLUMNS, *KEY_COLUMNS)
    .select_from(
        resource_locations.outerjoin(
            resources,
            and_(
                resources.c.patient_id == resource_locations.c.patient_id,
                resources.c.resource_type == resource_locations.c.resource_type,
                resources.c.resource_id == resource_locations.c.resource_id,
            ),
        )
        .outerjoin(resource_versions, _IS_CURRENT)
        .outerjoin(patient_keys, patient_keys.c.patient_id == resource_locations.c.patient_id)
    )
    .where(
        resource_locations.c.resource_id == bindparam("i"),
        resource_locations.c.resource_type == bindparam("t"),
    )
)


#: Lists of up to this many values (ids, a filter's hashes, types) are bound as that many
#: parameters, in a statement built per length, and run through the driver (``all_plain``);
#: longer ones as SQLAlchemy's expanding parameters.
_FIXED_LIST = 16


def _in(column: Any, name: str, count: int | None) -> Any:
    """``column IN`` a list: ``count`` parameters ``<name>_<j>``, or an expanding ``<name>`` (None)."""
    if count is None:
        return column.in_(bindparam(name, expanding=True))
    return column.in_([bindparam(f"{name}_{j}") for j in range(count)])


def _token_matches(index: int, resource_type: Any, hashes: int | None) -> Select[Any]:
    """The ids of the record's resources of ``resource_type`` that token filter ``index`` matches."""
    st = search_tokens.alias()
    return select(st.c.resource_id).where(
        st.c.patient_id == bindparam("p"),
        st.c.resource_type == resource_type,
        st.c.param == bindparam(f"n{index}"),
        _in(st.c.value_hash, f"h{index}", hashes),
    )


@functools.lru_cache(maxsize=256)
def _search_statement(typed: bool, ids: int | None, hashes: tuple[int | None, ...]) -> Select[Any]:
    """The search of one shape (a type or not, how many ids, each token filter's hashes), built once.

    Building a statement and its cache key costs more than running a search by index (about
    0.5 ms, 2.5 ms with a token filter): each shape is built once, its values bound per call
    (``p`` the record, ``t`` the type, ``ids_<j>``, then ``n<i>``/``h<i>_<j>`` each filter's
    parameter and value hashes; a list counted None is an expanding parameter, ``ids``/``h<i>``;
    ``ids`` 0 is no id filter).
    """
    query = (
        select(*_VERSION_COLUMNS)
        .join(resources, _IS_CURRENT)
        .where(resources.c.patient_id == bindparam("p"), resources.c.deleted.is_(False))
    )
    if typed:
        query = query.where(resources.c.resource_type == bindparam("t"))
    if ids != 0:
        query = query.where(_in(resources.c.resource_id, "ids", ids))
    of_type = bindparam("t") if typed else resources.c.resource_type
    for index, count in enumerate(hashes):
        query = query.where(resources.c.resource_id.in_(_token_matches(index, of_type, count)))
    return query.order_by(resources.c.resource_type, resources.c.resource_id)


@functools.lru_cache(maxsize=256)
def _search_by_tokens(ids: int | None, hashes: tuple[int | None, ...]) -> Select[Any]:
    """A typed search with token filters, driven by its matches (PostgreSQL).

    The same rows as :func:`_search_statement`, in the same order: the ids each filter matches
    (``ix_search_tokens_lookup``), intersected, then each one's current version, looked up by
    primary key in a ``LATERAL`` subquery (``LIMIT 1``: at most one current resource per id,
    and the subquery is not flattened into the outer join). Whatever the planner's statistics,
    a search costs its matches: without statistics (a new or fast-growing record, before the
    next ``ANALYZE``), PostgreSQL planned the ``IN (SELECT …)`` form as nested loops over every
    resource of the type in the record, for each of them (an ITI-65 resubmission check in a
    record of 150 documents took 34 ms, of 300 documents 129 ms).
    """
    matched = [_token_matches(index, bindparam("t"), count) for index, count in enumerate(hashes)]
    found_ids = (intersect(*matched) if len(hashes) > 1 else matched[0].distinct()).subquery("matched")
    current = (
        select(*_VERSION_COLUMNS)
        .join(resources, _IS_CURRENT)
        .where(
            resources.c.patient_id == bindparam("p"),
            resources.c.resource_type == bindparam("t"),
            resources.c.resource_id == found_ids.c.resource_id,
            resources.c.deleted.is_(False),
        )
    )
    if ids != 0:
        current = current.where(_in(resources.c.resource_id, "ids", ids))
    found = current.limit(1).lateral("found")
    return (
        select(*found.c)
        .select_from(found_ids)
        .join(found, true())
        .order_by(found.c.resource_type, found.c.resource_id)
    )


@functools.lru_cache(maxsize=64)
def _search_by_resources(typed: bool, ids: int | None) -> Select[Any]:
    """A search without token filters, driven by the record's resources (PostgreSQL).

    The same rows as :func:`_search_statement`, in the same order: the record's current
    resources (of the type, of the ids), then each one's version by primary key in a
    ``LATERAL`` subquery (``LIMIT 1``: one version per key, and the subquery is not flattened
    into a join whose plan depends on an estimate). psycopg prepares a statement at its fifth
    use, and PostgreSQL then plans it once for every record (a generic plan), from the average
    record: about one Observation per record in a store of 1,000 small ones. The join was then
    planned as a nested loop that read, for each version of the record, all its resources of the
    type and compared their ids (a join filter, not an index condition): ``Observation?date=ge``
    in a record of 368 Observations compared 67,528 rows, 24 ms instead of 0.5. Whatever the
    estimate, a search now costs one primary-key look-up per resource (~1.2 ms for 368).
    """
    listed = select(resources.c.resource_type, resources.c.resource_id, resources.c.version_id).where(
        resources.c.patient_id == bindparam("p"), resources.c.deleted.is_(False)
    )
    if typed:
        listed = listed.where(resources.c.resource_type == bindparam("t"))
    if ids != 0:
        listed = listed.where(_in(resources.c.resource_id, "ids", ids))
    listed_rows = listed.subquery("listed")
    version = (
        select(*_VERSION_COLUMNS)
        .where(
            resource_versions.c.patient_id == bindparam("p"),
            resource_versions.c.resource_type == listed_rows.c.resource_type,
            resource_versions.c.resource_id == listed_rows.c.resource_id,
            resource_versions.c.version_id == listed_rows.c.version_id,
        )
        .limit(1)
        .lateral("version")
    )
    return (
        select(*version.c)
        .select_from(listed_rows)
        .join(version, true())
        .order_by(version.c.resource_type, version.c.resource_id)
    )


def _search_query(sqlite: bool, typed: bool, ids: int | None, hashes: tuple[int | None, ...]) -> Select[Any]:
    """The statement of a search of this shape on this backend (built once per shape).

    SQLite plans the join and the ``IN (SELECT …)`` form from the record's rows already; on
    PostgreSQL a search is driven by its token matches, or without token filters by the
    record's resources, so that neither the statistics nor a generic plan decide its cost.
    """
    if sqlite:
        return _search_statement(typed, ids, hashes)
    if not hashes:
        return _search_by_resources(typed, ids)
    if typed:
        return _search_by_tokens(ids, hashes)
    return _search_statement(typed, ids, hashes)


# The live records registered under an identifier hash (a feed's INS, a patient's sign-in).
_IDENTITIES = (
    select(identities.c.patient_id)
    .join(patient_keys, patient_keys.c.patient_id == identities.c.patient_id)
    .where(identities.c.value_hash == bindparam("h"), patient_keys.c.wrapped_key.is_not(None))
    .order_by(identities.c.patient_id)
)


@functools.lru_cache(maxsize=16)
def _of_types(count: int | None) -> Select[Any]:
    """Every current, non-deleted resource of ``count`` types in a record (the policy's Patient and Consents)."""
    return (
        select(*_VERSION_COLUMNS)
        .join(resources, _IS_CURRENT)
        .where(
            resources.c.patient_id == bindparam("p"),
            resources.c.deleted.is_(False),
            _in(resources.c.resource_type, "types", count),
        )
        .order_by(resources.c.resource_type, resources.c.resource_id)
    )


def _version(row: Sequence[Any]) -> StoredVersion:
    return StoredVersion(
        patient_id=row[0],
        resource_type=row[1],
        resource_id=row[2],
        version_id=row[3],
        last_updated=utc(row[4]),
        deleted=bool(row[5]),
        sealed=row[6],
    )


class SQLStoreSession(
    AppSessionMixin,
    KeySessionMixin,
    JournalSessionMixin,
    OutboxSessionMixin,
    PortalSessionMixin,
    FeedSessionMixin,
    ResearchSessionMixin,
    FeedMessageSessionMixin,
    FeedOfferSessionMixin,
    CredentialSessionMixin,
    RepresentationSessionMixin,
    MessageNoticeSessionMixin,
):
    """One transaction on the SQL store."""

    #: Whether ``resource_locations`` can be joined to the records' tables in one query (not on
    #: Citus, where they are distributed on different columns).
    locations_joined = True

    def locate(self, resource_type: str, resource_id: str) -> str | None:
        """Return the patient id holding a resource.

        On Citus an id that starts with a log key is found in ``resource_places`` on that key's
        shard (the record's), and a Patient in its own record (its id is the record's); other
        ids (and any not found there: a store downgraded then upgraded) in ``resource_locations``.
        """
        if self._logs.distributed:
            if resource_type == "Patient":
                current = self.current(resource_id, resource_type, resource_id)
                if current is not None:
                    return resource_id
            token = self._logs.token_in(resource_id)
            if token is not None:
                row = self._c.execute(_PLACE, {"k": token, "t": resource_type, "i": resource_id}).first()
                if row is not None:
                    return str(row[0])
        row = self._c.execute(_LOCATE, {"t": resource_type, "i": resource_id}).first()
        return None if row is None else str(row[0])

    def id_prefix(self, patient_id: str) -> str:
        """Return how a new resource id of a record starts (on Citus its shard's log key, else nothing)."""
        # The buffered rows are not written first (placement metadata): a unit's new resources
        # are then written together, not one flush per resource.
        return self._logs.id_prefix(self._connection, patient_id)

    def current(self, patient_id: str, resource_type: str, resource_id: str) -> StoredVersion | None:
        """Return the current version of a resource."""
        row = first_plain(self._c, _CURRENT, {"p": patient_id, "t": resource_type, "i": resource_id})
        return None if row is None else _version(row)

    def current_of_types(self, patient_id: str, resource_types: Sequence[str]) -> list[StoredVersion]:
        """Return the current, non-deleted versions of every resource of these types in a record, in one query."""
        params: dict[str, Any] = {"p": patient_id}
        if 0 < len(resource_types) <= _FIXED_LIST:
            params.update((f"types_{j}", t) for j, t in enumerate(resource_types))
            return [_version(r) for r in all_plain(self._c, _of_types(len(resource_types)), params)]
        params["types"] = list(resource_types)
        return [_version(r) for r in self._c.execute(_of_types(None), params).all()]

    def locate_current(self, resource_type: str, resource_id: str) -> tuple[str, StoredVersion | None] | None:
        """Return the patient id holding a resource and its current version.

        One query, unless the locations are distributed apart from the records (Citus: located
        first, then read in the record's shard group).
        """
        if not self.locations_joined:
            if resource_type == "Patient" and self._logs.distributed:
                current = self.current(resource_id, resource_type, resource_id)
                if current is not None:
                    return resource_id, current  # in its own record: one query
            patient_id = self.locate(resource_type, resource_id)
            if patient_id is None:
                return None
            return patient_id, self.current(patient_id, resource_type, resource_id)
        row = first_plain(self._c, _LOCATE_CURRENT, {"t": resource_type, "i": resource_id})
        if row is None:
            return None
        patient_id = str(row[0])
        if row[8] is not None:  # the key row, kept for this transaction's ``get_key``
            self._key_rows[patient_id] = stored_key(row[8:])
        return patient_id, None if row[1] is None else _version(row[1:8])

    def current_many(self, patient_id: str, keys: Sequence[tuple[str, str]]) -> list[StoredVersion]:
        """Return the current, non-deleted versions of several ``(type, id)`` of one record, in one query."""
        found: list[StoredVersion] = []
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = self._c.execute(
                select(*_VERSION_COLUMNS)
                .join(resources, _IS_CURRENT)
                .where(
                    resources.c.patient_id == patient_id,
                    resources.c.deleted.is_(False),
                    tuple_(resources.c.resource_type, resources.c.resource_id).in_(chunk),
                )
                .order_by(resources.c.resource_type, resources.c.resource_id)
            ).all()
            found.extend(_version(r) for r in rows)
        return found

    def version(
        self, patient_id: str, resource_type: str, resource_id: str, version_id: int
    ) -> StoredVersion | None:
        """Return one version."""
        rv = resource_versions
        row = self._c.execute(
            select(*_VERSION_COLUMNS).where(
                rv.c.patient_id == patient_id,
                rv.c.resource_type == resource_type,
                rv.c.resource_id == resource_id,
                rv.c.version_id == version_id,
            )
        ).first()
        return None if row is None else _version(row)

    def history(self, patient_id: str, resource_type: str, resource_id: str | None) -> list[StoredVersion]:
        """Return the versions of a resource or of a type in a record, newest first."""
        rv = resource_versions
        query = select(*_VERSION_COLUMNS).where(
            rv.c.patient_id == patient_id, rv.c.resource_type == resource_type
        )
        if resource_id is not None:
            query = query.where(rv.c.resource_id == resource_id)
        query = query.order_by(rv.c.last_updated.desc(), rv.c.resource_id, rv.c.version_id.desc())
        return [_version(r) for r in self._c.execute(query).all()]

    def write_version(self, version: StoredVersion) -> None:
        """Append a version and make it current.

        Raises:
            Conflict: the version already exists (a concurrent writer got there first).
        """
        values = {
            "patient_id": version.patient_id,
            "resource_type": version.resource_type,
            "resource_id": version.resource_id,
            "version_id": version.version_id,
            "deleted": version.deleted,
            "last_updated": version.last_updated,
        }
        if version.version_id == 1:
            self._buffer(resource_versions, [{**values, "sealed": version.sealed}])
            self._buffer(resources, [values])
            self._locate_new(version)
            return
        conflict = Conflict(f"{version.resource_type}/{version.resource_id} was changed concurrently; retry.")
        try:
            self._c.execute(insert(resource_versions).values(**values, sealed=version.sealed))
        except IntegrityError:
            raise conflict from None
        result = self._c.execute(
            update(resources)
            .where(
                resources.c.patient_id == version.patient_id,
                resources.c.resource_type == version.resource_type,
                resources.c.resource_id == version.resource_id,
                resources.c.version_id == version.version_id - 1,
            )
            .values(version_id=version.version_id, deleted=version.deleted, last_updated=version.last_updated)
        )
        if result.rowcount != 1:
            raise conflict

    def _locate_new(self, version: StoredVersion) -> None:
        """Write where a new resource is: by its id's log key on Citus (the record's shard), else by its id.

        On Citus a Patient needs no location: its id is its record's (``locate`` reads it there).
        """
        place: dict[str, object] = {
            "resource_id": version.resource_id,
            "resource_type": version.resource_type,
            "patient_id": version.patient_id,
        }
        if (
            self._logs.distributed
            and version.resource_type == "Patient"
            and version.resource_id == version.patient_id
        ):
            return
        token = self._logs.token_in(version.resource_id)
        if token is not None:
            self._buffer(resource_places, [{"log_key": token, **place}])
        else:
            self._buffer(resource_locations, [place])

    def set_tokens(
        self,
        patient_id: str,
        resource_type: str,
        resource_id: str,
        hashes: set[tuple[str, bytes]],
        *,
        new: bool = False,
    ) -> None:
        """Replace a resource's blind-index entries (``new``: it has none yet)."""
        st = search_tokens
        rows: list[dict[str, object]] = [
            {
                "patient_id": patient_id,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "param": p,
                "value_hash": h,
            }
            for p, h in sorted(hashes)
        ]
        if new:
            self._buffer(st, rows)
            return
        self._c.execute(
            delete(st).where(
                st.c.patient_id == patient_id,
                st.c.resource_type == resource_type,
                st.c.resource_id == resource_id,
            )
        )
        if rows:
            self._c.execute(insert(st), rows)

    def search(
        self,
        patient_id: str,
        resource_type: str | None,
        ids: Sequence[str],
        token_filters: Sequence[tuple[str, Sequence[bytes]]],
    ) -> list[StoredVersion]:
        """Return current, non-deleted versions matching ids and every token filter."""
        lists: list[Sequence[object]] = [ids] if ids else []
        lists.extend(hashes for _, hashes in token_filters)
        fixed = all(0 < len(values) <= _FIXED_LIST for values in lists)
        id_count = (len(ids) if fixed else None) if ids else 0
        hash_counts = tuple(len(hashes) if fixed else None for _, hashes in token_filters)
        sqlite = self._c.dialect.name == "sqlite"
        query = _search_query(sqlite, resource_type is not None, id_count, hash_counts)
        params: dict[str, Any] = {"p": patient_id}
        if resource_type is not None:
            params["t"] = resource_type
        for index, (param, _) in enumerate(token_filters):
            params[f"n{index}"] = param
        if not fixed:
            if ids:
                params["ids"] = list(ids)
            for index, (_, hashes) in enumerate(token_filters):
                params[f"h{index}"] = list(hashes)
            return [_version(r) for r in self._c.execute(query, params).all()]
        params.update((f"ids_{j}", value) for j, value in enumerate(ids))
        for index, (_, hashes) in enumerate(token_filters):
            params.update((f"h{index}_{j}", value) for j, value in enumerate(hashes))
        return [_version(r) for r in all_plain(self._c, query, params)]

    def find_identities(self, value_hash: bytes) -> list[str]:
        """Return every live patient registered under a global identifier hash."""
        return [str(r[0]) for r in all_plain(self._c, _IDENTITIES, {"h": value_hash})]

    def set_identities(self, patient_id: str, hashes: set[bytes]) -> None:
        """Replace the global identifier hashes of a patient."""
        self._c.execute(delete(identities).where(identities.c.patient_id == patient_id))
        if hashes:
            self._c.execute(
                insert(identities), [{"patient_id": patient_id, "value_hash": h} for h in sorted(hashes)]
            )


class SQLStore:
    """Opens transactions on a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        #: SQLite writes one transaction at a time; PostgreSQL runs them side by side.
        self.single_writer = self._sqlite
        url = engine.url.render_as_string(hide_password=False)
        self._writers = WriterLock(sqlite_file(url)) if self._sqlite else None
        #: Flushes the WAL after a writing session's commit, outside the writer lock (SQLite).
        self._wal = wal_sync(engine)
        self._locations_joined = self._sqlite or not _has_citus(engine)
        #: Where the journal's logs live, read by the first session (carnet.store.journal_logs).
        self.logs = JournalLogs()

    def writer_first(self) -> None:
        """Wait briefly while a thread of this process holds SQLite's writer lock (:func:`writer_first`)."""
        if self._writers is not None:
            writer_first()

    @contextmanager
    def session(
        self, *, write: bool = False, committed: Callable[[], None] | None = None
    ) -> Iterator[SQLStoreSession]:
        """Open one transaction; on SQLite a writing one takes the write lock up front.

        SQLite writers queue on a :class:`WriterLock` first (no sleeping in SQLite's busy handler),
        holding it from ``BEGIN IMMEDIATE`` to ``COMMIT`` only: the pool's checkout before, its
        checkin (a ``ROLLBACK`` that resets the connection) and the commit's flush to disk after
        run outside it, so the other writers (threads and worker processes) wait for the
        transaction alone. The block's exit returns once the commit is durable; ``committed`` is
        called before that, once the commit is done and the lock released.
        """
        with self.engine.connect() as connection:
            if self._sqlite:
                connection.info[BEGIN_MODE] = "BEGIN IMMEDIATE" if write else "BEGIN"
            if not write or self._writers is None:
                with self._begin(connection) as session:
                    yield session
                if committed is not None:
                    committed()
                return
            # The commit's flush to disk waits after the lock is released (``wal_sync``): the
            # next writer's transaction runs meanwhile. The session ends once it is durable.
            connection.info[SYNC_AFTER] = self._wal is not None
            try:
                with self._writers.held(), self._begin(connection) as session:
                    yield session
            finally:
                connection.info.pop(SYNC_AFTER, None)
            if committed is not None:
                committed()
            if self._wal is not None:
                self._wal.sync()

    @contextmanager
    def _begin(self, connection: Connection) -> Iterator[SQLStoreSession]:
        with connection.begin():
            self.logs.load(connection)
            session = SQLStoreSession(connection, self.logs)
            session.locations_joined = self._locations_joined
            yield session
            session.flush()


def _has_citus(engine: Engine) -> bool:
    """Whether the database has the Citus extension (checked once, when the store is opened)."""
    with engine.connect() as connection:
        return is_citus(connection)
