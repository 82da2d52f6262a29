"""MLLP: the Minimal Lower Layer Protocol that carries HL7 v2 messages over TCP.

Each message travels in a frame ``<VT> message <FS><CR>`` (``0x0B`` … ``0x1C 0x0D``), and each
is answered on the same connection by one frame holding its acknowledgement. This module is the
transport alone: :func:`serve` listens, reads the frames of each connection in order and answers
each with what the ``handler`` it is given returns (the composition root hands in the use case of
:mod:`carnet.services.feed_intake`, run off the event loop). A connection that sends more than
``max_bytes`` without closing a frame, or bytes outside a frame, is closed: nothing is
acknowledged that was not read whole. The listeners of one port in several worker processes even
out their connections (:class:`Balance`), each connection served whole by one of them.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

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
    balance: Path | None = None,
) -> Listener:
    """Start listening (over TLS when ``tls`` is given); each connection's frames are answered in order.

    ``reuse_port``: several processes listen on the same port (``SO_REUSEPORT``), each worker of
    ``carnet serve --workers N``. ``balance``: with ``reuse_port``, the directory of the file through
    which the listeners of the port even out their connections (:class:`Balance`); the kernel alone
    spreads them by a hash, which left one worker 74 % or 86 % of a feed's 8 connections.

    Raises:
        OSError: the port cannot be bound.
    """
    loop = asyncio.get_running_loop()
    sockets = await _listening_sockets(loop, host, port, reuse_port=reuse_port)
    listener = Listener(sockets, handler, max_bytes=max_bytes, tls=tls)
    if balance is not None and reuse_port:
        try:
            listener.balance = Balance(balance / f"balance-{min(listener.ports)}", listener)
        except OSError as exc:  # a read-only data directory: the kernel's spread alone, as before
            log.warning("MLLP connections not evened out between the workers: %s", exc)
        except BaseException:
            listener.close()
            raise
    listener.start()
    return listener


async def _listening_sockets(
    loop: asyncio.AbstractEventLoop, host: str, port: int, *, reuse_port: bool
) -> list[socket.socket]:
    """Bind and listen on every address of ``host`` (as ``asyncio.start_server`` does)."""
    infos = await loop.getaddrinfo(
        host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """An MLLP listener: accepts connections and answers their frames (what :func:`serve` returns)."""

    def __init__(
        self,
        sockets: list[socket.socket],
        handler: Handler,
        *,
        max_bytes: int,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.sockets = sockets
        self.handler = handler
        self.max_bytes = max_bytes
        self.tls = tls
        #: Evens out the connections with the other listeners of the port (``None``: alone).
        self.balance: Balance | None = None
        #: Connections being served here now (handed-over ones included, handed-off ones not).
        self.connections = 0
        self._accepting: list[asyncio.Task[None]] = []
        self._serving: set[asyncio.Task[None]] = set()

    @property
    def ports(self) -> frozenset[int]:
        """The local ports listened on (one, unless port 0 gave each address its own)."""
        return frozenset(sock.getsockname()[1] for sock in self.sockets)

    def start(self) -> None:
        """Accept on every socket (in tasks of the running loop)."""
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept(sock)) for sock in self.sockets]

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:  # until close() cancels it; close() then closes the socket
            try:
                connection, _ = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, or memory: try again shortly
                log.warning("MLLP accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if self.balance is not None and self.balance.hand_off(connection):
                connection.close()  # the other listener holds its own copy of the descriptor
                continue
            self.adopt(connection)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def adopt(self, connection: socket.socket) -> None:
        """Serve an accepted connection here (the balance, if any, has counted it here)."""
        self.connections += 1
        task = asyncio.get_running_loop().create_task(self._serve(connection))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, connection: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection.setblocking(False)
            reader = asyncio.StreamReader(limit=self.max_bytes + 1024)
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, connection, ssl=self.tls)
            except (OSError, ssl.SSLError, TimeoutError) as exc:  # a failed TLS handshake: nothing read
                log.info("MLLP connection closed before its first frame: %s", exc)
                connection.close()
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await _connection(reader, writer, self.handler, self.max_bytes)
        finally:
            self.connections -= 1
            if self.balance is not None:
                self.balance.left()

    def close(self) -> None:
        """Stop accepting (the connections being served go on) and leave the balance."""
        for task in self._accepting:
            task.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._close_sockets()
        else:  # after the cancelled accepts have let go of them (a task not started yet included)
            loop.call_soon(self._close_sockets)
        if self.balance is not None:
            self.balance.close()

    async def wait_closed(self) -> None:
        """Wait until the listener no longer accepts (its port free)."""
        await asyncio.gather(*self._accepting, return_exceptions=True)
        self._close_sockets()

    async def serve_forever(self) -> None:
        """Accept until cancelled (``carnet feeds mllp``)."""
        await asyncio.gather(*self._accepting)

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()
        await self.wait_closed()


class Balance:
    """Evens out the connections of one MLLP port among the processes listening on it.

    With ``SO_REUSEPORT`` the kernel hands each new connection to one listening socket by a
    hash of its addresses: with the few long-lived connections of a hospital's interface engine
    one worker may hold most of them and be bound by its own core while the other idles
    (``bench/feeds.py``, 8 connections: 375 documents/s at a 50/50 CPU split, 278/s at 14/86,
    2026-12-07). So each listener counts its connections in a shared table (a file beside the
    data, 64 slots of process id, connections and a random token, changed under ``flock``), and
    on accepting one, before reading a byte of it, passes it to the listener that holds the
    fewest when that is fewer than its own: the descriptor goes over a Unix datagram socket
    (``SCM_RIGHTS``, an abstract address named by the token, so nothing lies on disk), and the
    receiver serves it as if it had accepted it (TLS handshake included). A receiver takes only
    TCP sockets of its own port from a process of its own user (``SCM_CREDENTIALS``): nothing
    a local process could not do by connecting to the port itself. A listener that cannot be
    reached (its process gone) is struck from the table and the connection is served where it
    was accepted: balancing never refuses a connection.
    """

    _SLOT = struct.Struct("=iIQ")  # process id, connections, token (0: a free slot)
    _SLOTS = 64

    def __init__(self, path: Path, listener: Listener) -> None:
        self.path = path
        self._listener = listener
        self._ports = listener.ports
        self.token = secrets.randbits(63) or 1
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._inbox = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            self._inbox.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._inbox.bind(_address(self.token))
            with self._table() as table:
                self._index = self._claim(table, 0)
        except BaseException:
            self._inbox.close()
            os.close(self._fd)
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._inbox.fileno(), self._receive)
        self._closed = False
        #: Connections passed to another listener, and received from one (for the tests).
        self.handed_off = 0
        self.handed_over = 0

    # -- the shared table -------------------------------------------------------------------

    @contextlib.contextmanager
    def _table(self) -> Iterator[list[list[int]]]:
        """The table, read under the file's lock and written back at the block's end."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._fd, self._SLOT.size * self._SLOTS, 0).ljust(
                self._SLOT.size * self._SLOTS, b"\0"
            )
            table = [list(slot) for slot in self._SLOT.iter_unpack(raw)]
            before = [list(slot) for slot in table]
            yield table
            if table != before:
                os.pwrite(self._fd, b"".join(self._SLOT.pack(*slot) for slot in table), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _claim(self, table: list[list[int]], connections: int) -> int:
        """Take a free slot (or one whose process is gone) for this listener; return its index."""
        for index, (pid, _, token) in enumerate(table):
            if token == 0 or not _alive(pid):
                table[index] = [os.getpid(), connections, self.token]
                return index
        raise OSError("64 MLLP listeners already share this port's balance table")

    def _mine(self, table: list[list[int]]) -> list[int]:
        """This listener's slot (taken again if another process struck it meanwhile)."""
        if table[self._index][2] != self.token:
            self._index = self._claim(table, self._listener.connections)
        return table[self._index]

    # -- connections ------------------------------------------------------------------------

    def hand_off(self, connection: socket.socket) -> bool:
        """Pass a just-accepted connection to the listener holding the fewest, if fewer than here.

        Returns True when it was passed (the caller closes its own descriptor), False when it is
        to be served here (and counted here already).
        """
        with self._table() as table:
            mine = self._mine(table)
            peers = [
                slot
                for index, slot in enumerate(table)
                if slot[2] and index != self._index and _alive(slot[0])
            ]
            target = min(peers, key=lambda slot: slot[1], default=None)
            if target is None or target[1] >= mine[1]:
                mine[1] += 1
                return False
            target[1] += 1
            token = target[2]
        try:
            rights = array.array("i", [connection.fileno()])
            self._inbox.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, _address(token))
        except OSError as exc:
            gone = isinstance(exc, (ConnectionRefusedError, FileNotFoundError))
            with self._table() as table:
                for slot in table:
                    if slot[2] == token:
                        slot[:] = [0, 0, 0] if gone else [slot[0], max(slot[1] - 1, 0), token]
                self._mine(table)[1] += 1
            return False
        self.handed_off += 1
        return True

    def left(self) -> None:
        """Count down a connection that ended here."""
        if self._closed:
            return
        with self._table() as table:
            mine = self._mine(table)
            mine[1] = max(mine[1] - 1, 0)

    def _receive(self) -> None:
        """Serve the connections other listeners passed here (on the loop, when the inbox is readable)."""
        space = socket.CMSG_SPACE(_MAX_FDS * 4) + socket.CMSG_SPACE(_CREDENTIALS.size)
        while True:
            try:
                _, ancillary, flags, _ = self._inbox.recvmsg(16, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("MLLP balance: receiving a connection failed: %s", exc)
                return
            descriptors: list[int] = []
            uid = None
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    descriptors.extend(array.array("i", data[: len(data) - len(data) % 4]))
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    _, uid, _ = _CREDENTIALS.unpack(data[: _CREDENTIALS.size])
            for fd in descriptors:
                self._take(fd, trusted=uid == os.getuid() and not flags & socket.MSG_CTRUNC)

    def _take(self, fd: int, *, trusted: bool) -> None:
        """Serve one received descriptor if it is a TCP connection to this port; else close it."""
        refused = "MLLP balance: a descriptor that is not a connection to this port was refused"
        try:
            connection = socket.socket(fileno=fd)
        except OSError:  # not a socket
            os.close(fd)
            log.warning(refused)
            return
        try:
            ours = (
                trusted
                and connection.family in (socket.AF_INET, socket.AF_INET6)
                and connection.type == socket.SOCK_STREAM
                and connection.getsockname()[1] in self._ports
            )
        except OSError:
            ours = False
        if not ours:
            log.warning(refused)
            connection.close()
            return
        self.handed_over += 1
        self._listener.adopt(connection)

    def close(self) -> None:
        """Leave the table (new connections go to the other listeners) and close the inbox."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, RuntimeError):
            self._loop.remove_reader(self._inbox.fileno())
        with contextlib.suppress(OSError), self._table() as table:
            if table[self._index][2] == self.token:
                table[self._index] = [0, 0, 0]
        self._inbox.close()
        os.close(self._fd)


#: Descriptors one hand-off message may carry, and the sender's credentials (pid, uid, gid).
_MAX_FDS = 4
_CREDENTIALS = struct.Struct("=iII")
_BACKLOG = 100


def _address(token: int) -> bytes:
    """The abstract Unix address of a listener's inbox (Linux: no file, gone with its socket)."""
    return b"\0carnet-mllp-%016x" % token


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
