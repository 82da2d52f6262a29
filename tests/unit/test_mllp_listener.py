"""The MLLP listener's balance between worker processes degrades, never refuses (carnet.feeds.mllp)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from carnet.feeds import mllp
from event_loops import run_to_end

ACK = b"MSH|^~\\&|CARNET|CARNET|LAB|LAB|20240101||ACK|A1|P|2.5\rMSA|AA|M1"


async def _answer(_: bytes, __: str | None) -> list[bytes]:
    return [ACK]


def test_a_balance_table_that_cannot_be_made_leaves_the_listener_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory where the table cannot be written (here a file stands where its folder
    should be): the listener serves without evening out, and says so once."""
    blocked = tmp_path / "data"
    blocked.write_text("not a directory")

    async def run() -> tuple[bool, list[bytes]]:
        listener = await mllp.serve(
            "127.0.0.1", 0, _answer, max_bytes=1 << 16, reuse_port=True, balance=blocked / "mllp"
        )
        try:
            port = listener.sockets[0].getsockname()[1]
            return listener.balance is None, await mllp.send("127.0.0.1", port, [b"MSH|^~\\&|LAB|LAB"])
        finally:
            listener.close()
            await listener.wait_closed()

    with caplog.at_level(logging.WARNING, logger="carnet.mllp"):
        alone, replies = run_to_end(run())
    assert alone
    assert replies == [ACK]
    assert "not evened out" in caplog.text


def test_a_closed_listener_frees_its_port(tmp_path: Path) -> None:
    """Once closed and waited for, the port can be bound again without SO_REUSEPORT."""

    async def run() -> None:
        listener = await mllp.serve(
            "127.0.0.1", 0, _answer, max_bytes=1 << 16, reuse_port=True, balance=tmp_path
        )
        port = listener.sockets[0].getsockname()[1]
        listener.close()
        await listener.wait_closed()
        again = await mllp.serve("127.0.0.1", port, _answer, max_bytes=1 << 16)
        again.close()
        await again.wait_closed()
        await asyncio.sleep(0)

    run_to_end(run())
