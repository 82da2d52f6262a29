"""The witness's HTTP interface (C2SP ``tlog-witness``), a small Starlette application.

::

    POST /add-checkpoint      body: "old <size>\\n", proof lines (base64), "\\n", the signed checkpoint
                              200 text/plain: the cosignature line
                              400 malformed · 403 not signed by the log's key · 404 unknown log
                              409 text/x.tlog.size: the size last cosigned · 422 bad consistency proof
    GET  /latest?origin=O     the latest checkpoint cosigned for O, with its cosignature (a Carnet
                              addition: the specification leaves monitor retrieval open)
    GET  /                    the witness's verifier key and the logs it follows (origin, size,
                              refused requests kept as evidence)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from carnet.witness.state import Refusal, WitnessState, parse_submission

#: A checkpoint with a hundred signatures and a full proof fits well within this.
MAX_BODY = 64 * 1024


def create_witness_app(state: WitnessState, clock: Callable[[], float] = time.time) -> Starlette:
    """Build the witness's ASGI application over ``state``."""

    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse("The request body is too large.\n", status_code=413)
        try:
            line = state.add_checkpoint(parse_submission(body), int(clock()))
        except Refusal as refusal:
            if refusal.status == 409 and refusal.size is not None:
                # Exactly this type, without a charset parameter (the specification names it).
                return Response(
                    f"{refusal.size}\n", status_code=409, headers={"Content-Type": "text/x.tlog.size"}
                )
            return PlainTextResponse(refusal.message + "\n", status_code=refusal.status)
        return PlainTextResponse(line)

    async def latest(request: Request) -> Response:
        origin = request.query_params.get("origin", "")
        note = state.latest(origin)
        if note is None:
            return PlainTextResponse(
                f"No checkpoint of {origin[:200]!r} was cosigned here.\n", status_code=404
            )
        return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def index(request: Request) -> Response:
        logs = "".join(f"{origin} {size} {len(state.evidence(origin))}\n" for origin, size in state.logs())
        return PlainTextResponse(f"{state.verifier_key()}\n\n{logs}")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/latest", latest, methods=["GET"]),
            Route("/", index, methods=["GET"]),
        ]
    )
