"""MLLP: the Minimal Lower Layer Protocol that carries HL7 v2 messages over TCP.

Each message travels in a frame ``<VT> message <FS><CR>`` (``0x0B`` … ``0x1C 0x0D``), and each
is answered on the same connection by one frame holding its acknowledgement. This module is the
transport alone: :func:`serve` listens, reads the frames of each connection in order and answers
each with what the ``handler`` it is given returns (the composition root hands in the use case of
:mod:`carnet.services.feed_intake`, run off the event loop). A connection that sends more than
``max_bytes`` without closing a frame, or bytes outside a frame, is closed: nothing is
acknowledged that was not read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

START = b"\x0b"
END = b"\x1c\r"
log = logging.getLogger("carnet.mllp")

#: Answers one message with the frames to send back: its ACK, then a business ack (ZAM) if any.
#: Its second argument is the SHA-256 (hex) of the client's certificate over TLS, else None.
Handler = Callable[[bytes, str | None], Awaitable[Sequence[bytes]]]


class FrameError(Exception):
    """The peer broke the MLLP framing (bytes before a start block, or a frame too large)."""


def frame(payload: bytes) -> bytes:
    """Wrap one message in an MLLP frame."""
    return START + payload + END


async def read_frames(reader: asyncio.StreamReader, *, max_bytes: int) -> AsyncIterator[bytes]:
    """Yield each message of a connection, in order, until it closes.

    Raises:
        FrameError: bytes other than whitespace before a start block, or a frame over ``max_bytes``.
    """
    buffer = bytearray()
    while True:
        start = buffer.find(START)
        if start < 0:
            if buffer.strip():
                raise FrameError("bytes outside an MLLP frame")
            buffer.clear()
        elif start > 0:
            if bytes(buffer[:start]).strip():
                raise FrameError("bytes outside an MLLP frame")
            del buffer[:start]
        end = buffer.find(END)
        if buffer.startswith(START) and end > 0:
            yield bytes(buffer[1:end])
            del buffer[: end + len(END)]
            continue
        if len(buffer) > max_bytes + len(START) + len(END):
            raise FrameError("an MLLP frame over the size limit")
        chunk = await reader.read(65536)
        if not chunk:
            return
        buffer += chunk


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler, max_bytes: int
) -> None:
    peer = writer.get_extra_info("peername")
    certificate = peer_certificate(writer)
    try:
        async for message in read_frames(reader, max_bytes=max_bytes):
            for reply in await handler(message, certificate):
                writer.write(frame(reply))
            await writer.drain()
    except FrameError as exc:
        log.warning("MLLP connection from %s closed: %s", peer, exc)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def peer_certificate(writer: asyncio.StreamWriter) -> str | None:
    """The SHA-256 (lower-case hex) of the DER certificate the peer presented over TLS, or None."""
    channel = writer.get_extra_info("ssl_object")
    der = channel.getpeercert(binary_form=True) if isinstance(channel, ssl.SSLObject) else None
    return hashlib.sha256(der).hexdigest() if der else None


def server_tls(certificate: str, key: str, client_ca: str) -> ssl.SSLContext:
    """The TLS of an MLLP listener that requires each sender's certificate (mutual TLS, TLS 1.2+).

    ``certificate`` and ``key`` are the listener's own (PEM files); ``client_ca`` the PEM of the
    authorities whose client certificates it accepts. A client without a certificate, or with
    one no such authority signed, fails the handshake: not a byte of HL7 is read from it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certificate, key)
    return context


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    max_bytes: int,
    tls: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Start listening (over TLS when ``tls`` is given); each connection's frames are answered in order.

    ``reuse_port``: several processes listen on the same port (``SO_REUSEPORT``), the kernel
    spreading the connections among them (each worker of ``carnet serve --workers N``).
    """

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(reader, writer, handler, max_bytes)

    return await asyncio.start_server(
        on_connection, host, port, limit=max_bytes + 1024, ssl=tls, reuse_port=reuse_port or None
    )


async def send(
    host: str,
    port: int,
    messages: Sequence[bytes],
    *,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> list[bytes]:
    """Send messages on one connection; return every frame answered, in order (a small MLLP client).

    Each message is sent once the previous one's ACK has come back; business acks (ZAM) that
    follow an ACK are returned too, read until the server closes after the last message.

    Raises:
        FrameError: the server answered outside the framing. TimeoutError: no answer in time.
    """
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    replies: list[bytes] = []
    try:
        frames = read_frames(reader, max_bytes=64 * 1024 * 1024)
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            while True:
                reply = await asyncio.wait_for(anext(frames), timeout)
                replies.append(reply)
                if _is_ack(reply):
                    break
        if tls is None:
            writer.write_eof()
        # TLS cannot half-close (the server would not see an end): a business ack that follows
        # the last ACK is read for up to a second, then the client closes.
        wait = timeout if tls is None else min(timeout, 1.0)
        while True:
            try:
                replies.append(await asyncio.wait_for(anext(frames), wait))
            except StopAsyncIteration:
                break
            except TimeoutError:
                if tls is None:
                    raise
                break
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return replies


def _is_ack(message: bytes) -> bool:
    """Whether a message is a technical ACK (MSH-9 ``ACK``)."""
    header = message.split(b"\r", 1)[0]
    fields = header.split(header[3:4]) if len(header) > 4 else []
    return len(fields) > 8 and fields[8].startswith(b"ACK")
