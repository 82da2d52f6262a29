"""Print the SQL statements of one HL7 v2 feed message (of ``bench/feeds.py``), in order, and their count.

.venv/bin/python bench/feed_statements.py              # SQLite
.venv/bin/python bench/feed_statements.py postgres     # PostgreSQL (CARNET_TEST_PG_URL)
WIDTH=900 .venv/bin/python bench/feed_statements.py    # each statement cut at 900 characters
"""

from __future__ import annotations

import os
import sys
from typing import Any

from feeds import _messages, open_lab
from run import backend
from sqlalchemy import event

from carnet.api.app import build_services


def main() -> None:
    """Seed five records, take 20 messages to warm up, print the statements of the next one."""
    width = int(os.environ.get("WIDTH", "150"))
    with backend(sys.argv[1] if len(sys.argv) > 1 else "sqlite") as settings:
        services = build_services(settings)
        open_lab(services, 5)
        messages = _messages(30, 5, 100_000)
        for message in messages[:20]:
            services.hl7v2.receive("bench-lab", message)
        seen: list[str] = []

        @event.listens_for(services.store.engine, "before_cursor_execute")
        def record(*args: Any) -> None:
            statement, executemany = args[2], args[5]
            seen.append(("MANY " if executemany else "") + " ".join(statement.split())[:width])

        services.hl7v2.receive("bench-lab", messages[25])
        for statement in seen:
            print(statement)
        print(len(seen))


if __name__ == "__main__":
    main()
