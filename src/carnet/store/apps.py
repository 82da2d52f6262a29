"""The SQL side of the apps connected by SMART on FHIR: the registry, codes and tokens (by hash)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from carnet.services.apps import AppClient, AppCode, AppKind, AppToken
from carnet.store.connected import Connected, utc
from carnet.store.tables import app_assertions, app_clients, app_codes, app_tokens


def _client(row: Any) -> AppClient:
    return AppClient(
        client_id=row.client_id,
        name=row.name,
        kind=AppKind(row.kind),
        secret_hash=row.secret_hash,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        scopes=tuple(json.loads(row.scopes)),
        jwks=row.jwks,
        acts_as=row.acts_as,
        created_at=utc(row.created_at),
    )


class AppSessionMixin(Connected):
    """Apps, codes and tokens; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_app_client(self, client: AppClient) -> None:
        """Register an app."""
        self._c.execute(
            insert(app_clients).values(
                client_id=client.client_id,
                name=client.name,
                kind=client.kind.value,
                secret_hash=client.secret_hash,
                redirect_uris=json.dumps(list(client.redirect_uris)),
                scopes=json.dumps(list(client.scopes)),
                jwks=client.jwks,
                acts_as=client.acts_as,
                created_at=client.created_at,
            )
        )

    def app_client(self, client_id: str) -> AppClient | None:
        """Return a registered app, or None."""
        row = self._c.execute(select(app_clients).where(app_clients.c.client_id == client_id)).first()
        return _client(row) if row is not None else None

    def app_clients(self) -> list[AppClient]:
        """Return every registered app, by name."""
        rows = self._c.execute(select(app_clients).order_by(app_clients.c.name, app_clients.c.client_id))
        return [_client(row) for row in rows]

    def remove_app_client(self, client_id: str) -> bool:
        """Remove an app from the registry; return whether it was there."""
        done = self._c.execute(delete(app_clients).where(app_clients.c.client_id == client_id))
        self._c.execute(delete(app_codes).where(app_codes.c.client_id == client_id))
        return bool(done.rowcount)

    def add_app_code(self, code: AppCode) -> None:
        """Store an authorization code (by hash)."""
        self._c.execute(
            insert(app_codes).values(
                code_hash=code.code_hash,
                client_id=code.client_id,
                patient_id=code.patient_id,
                subject=code.subject,
                redirect_uri=code.redirect_uri,
                scope=code.scope,
                code_challenge=code.code_challenge,
                code_challenge_method=code.code_challenge_method,
                nonce=code.nonce,
                expires_at=code.expires_at,
                used_at=None,
                grant_until=code.grant_until,
            )
        )

    def app_code(self, code_hash: str) -> AppCode | None:
        """Return an authorization code by hash, used or not, or None."""
        row = self._c.execute(select(app_codes).where(app_codes.c.code_hash == code_hash)).first()
        if row is None:
            return None
        return AppCode(
            code_hash=row.code_hash,
            client_id=row.client_id,
            patient_id=row.patient_id,
            subject=row.subject,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            code_challenge=row.code_challenge,
            code_challenge_method=row.code_challenge_method,
            nonce=row.nonce,
            expires_at=utc(row.expires_at),
            used_at=utc(row.used_at) if row.used_at is not None else None,
            grant_until=utc(row.grant_until) if row.grant_until is not None else None,
        )

    def use_app_code(self, code_hash: str, at: datetime) -> bool:
        """Mark a code used; return False if it already was (a replay)."""
        done = self._c.execute(
            update(app_codes)
            .where(app_codes.c.code_hash == code_hash, app_codes.c.used_at.is_(None))
            .values(used_at=at)
        )
        return bool(done.rowcount)

    def add_app_token(self, token: AppToken) -> None:
        """Store an access or refresh token (by hash)."""
        self._c.execute(
            insert(app_tokens).values(
                token_hash=token.token_hash,
                kind=token.kind,
                family=token.family,
                client_id=token.client_id,
                patient_id=token.patient_id,
                subject=token.subject,
                scope=token.scope,
                issued_at=token.issued_at,
                expires_at=token.expires_at,
                revoked_at=token.revoked_at,
                grant_until=token.grant_until,
            )
        )

    def app_token(self, token_hash: str) -> AppToken | None:
        """Return a token by hash (revoked or expired included), or None."""
        row = self._c.execute(select(app_tokens).where(app_tokens.c.token_hash == token_hash)).first()
        if row is None:
            return None
        return AppToken(
            token_hash=row.token_hash,
            kind=row.kind,
            family=row.family,
            client_id=row.client_id,
            patient_id=row.patient_id,
            subject=row.subject,
            scope=row.scope,
            issued_at=utc(row.issued_at),
            expires_at=utc(row.expires_at),
            revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None,
            grant_until=utc(row.grant_until) if row.grant_until is not None else None,
        )

    def revoke_app_tokens(
        self,
        at: datetime,
        *,
        family: str | None = None,
        client_id: str | None = None,
        patient_id: str | None = None,
        token_hash: str | None = None,
    ) -> int:
        """Revoke one live token, those of a family, or of an app (on one record, or all); return how many."""
        table = app_tokens
        clauses: list[ColumnElement[bool]] = [table.c.revoked_at.is_(None)]
        if token_hash is not None:
            clauses.append(table.c.token_hash == token_hash)
        if family is not None:
            clauses.append(table.c.family == family)
        if client_id is not None:
            clauses.append(table.c.client_id == client_id)
        if patient_id is not None:
            clauses.append(table.c.patient_id == patient_id)
        if len(clauses) == 1:
            raise ValueError("Name the tokens to revoke: a family, an app or a record.")
        done = self._c.execute(update(table).where(*clauses).values(revoked_at=at))
        return int(done.rowcount or 0)

    def take_app_assertion(self, jti_hash: str, expires_at: datetime, now: datetime) -> bool:
        """Note a client assertion's id as taken; return False if it already was (a replay).

        Assertions that can no longer verify (``expires_at`` past) are purged first, so the
        table holds only the last few minutes' ids.
        """
        self._c.execute(delete(app_assertions).where(app_assertions.c.expires_at < now))
        statement = (pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert)(app_assertions)
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
        taken = self._c.execute(
            statement.values(jti_hash=jti_hash, expires_at=expires_at)
            .on_conflict_do_nothing()
            .returning(app_assertions.c.jti_hash)
        ).first()
        return taken is not None
