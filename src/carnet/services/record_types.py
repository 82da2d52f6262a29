"""What the record access returns: stored versions, write and search results, Bundle entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carnet.domain import fhirjson
from carnet.domain.errors import (
    CarnetError,
    InvalidRequest,
)
from carnet.domain.search import (
    SearchQuery,
)


class Stored:
    """A resource version as returned to a caller; ``resource`` is None for a deletion.

    Opened versions keep the stored JSON bytes and parse them only when asked: a page of
    search results or a whole record goes back to the client without a parse/serialise round.
    A version may also be opened lazily (``opener``, see ``Gate.open``): it is unsealed on first
    use, so that a search unseals only the page it returns when nothing else needs the content.
    """

    __slots__ = ("_opener", "_parsed", "_raw", "last_updated", "resource_id", "resource_type", "version_id")

    def __init__(
        self,
        *,
        resource_type: str,
        resource_id: str,
        version_id: int,
        last_updated: datetime,
        resource: dict[str, Any] | None = None,
        raw: bytes | None = None,
        opener: Callable[[], bytes] | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id
        self.last_updated = last_updated
        self._parsed = resource
        self._raw = raw
        self._opener = opener

    @property
    def deleted(self) -> bool:
        """Whether this version is a deletion (known without unsealing it)."""
        return self._raw is None and self._parsed is None and self._opener is None

    def _unsealed(self) -> bytes | None:
        if self._raw is None and self._opener is not None:
            self._raw, self._opener = self._opener(), None
        return self._raw

    @property
    def resource(self) -> dict[str, Any] | None:
        """The resource as JSON values (parsed on first use)."""
        if self._parsed is None and self._unsealed() is not None:
            self._parsed = fhirjson.loads_stored(self._raw or b"")
        return self._parsed

    @property
    def json(self) -> bytes | None:
        """The resource as JSON bytes, exactly as stored."""
        if self._unsealed() is None and self._parsed is not None:
            self._raw = fhirjson.dumps(self._parsed)
        return self._raw

    @property
    def etag(self) -> str:
        """The weak ETag of this version."""
        return f'W/"{self.version_id}"'


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    """The outcome of a create or update; ``created`` is False when a conditional create matched."""

    stored: Stored
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """One page of search results."""

    entries: list[Stored]
    total: int
    query: SearchQuery
    #: What ``_include`` / ``_revinclude`` brought in (search mode ``include``), within the record.
    included: tuple[Stored, ...] = ()

    @property
    def resources(self) -> list[dict[str, Any]]:
        """The page's resources as JSON values."""
        return [r for r in (e.resource for e in self.entries) if r is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRequest:
    """One entry of a transaction or batch Bundle, parsed at the edge."""

    method: str
    url: str
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_match: str | None = None
    if_none_exist: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryResponse:
    """The result of one Bundle entry (``error`` set when a batch entry failed)."""

    status: int
    location: str | None = None
    stored: Stored | None = None
    search: SearchResult | None = None
    error: CarnetError | None = None


def instant(moment: datetime) -> str:
    """Render a FHIR instant in UTC with milliseconds."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_etag(value: str) -> int:
    """Read a version number from an ``If-Match`` value (``W/"3"`` or ``3``).

    Raises:
        InvalidRequest: not a version ETag.
    """
    number = version_number(value.strip().removeprefix("W/").strip('"'))
    if number is None:
        raise InvalidRequest(f'If-Match {value[:30]!r} is not a version ETag; send W/"<versionId>".')
    return number


#: Version numbers are stored as 32-bit integers; a larger one cannot exist.
_MAX_VERSION = 2**31 - 1


def version_number(text: str) -> int | None:
    """Return the version number spelled by ``text`` in ASCII digits, or None if it spells none."""
    # isdigit() alone admits "²" and other digits that int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 10:
        return None
    number = int(text)
    return number if number <= _MAX_VERSION else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EverythingPage:
    """What part of a record ``$everything`` returns: types, changed since, and a page of it."""

    types: frozenset[str] | None = None
    since: datetime | None = None
    offset: int = 0
    count: int | None = None

    def keeps(self, stored: Stored) -> bool:
        """Tell whether a resource is of the types asked and changed since the instant asked."""
        return (self.types is None or stored.resource_type in self.types) and (
            self.since is None or stored.last_updated >= self.since
        )
