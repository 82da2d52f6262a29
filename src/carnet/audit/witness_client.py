"""Carnet's side of the witness protocol: submit checkpoints, read a witness's latest view.

:class:`HTTPWitness` speaks C2SP ``tlog-witness`` over HTTP with the standard library (no
extra dependency), with a short timeout: it runs in the checkpoint signer's background thread,
never in a request. Every cosignature it returns has been verified against the witness's key.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from carnet.audit.checkpoint import Checkpoint, open_checkpoint
from carnet.audit.cosignature import Cosignature, cosigner_name, open_cosignature
from carnet.domain.errors import WitnessRefused

#: Seconds to wait for a witness; a slow one only delays its own cosignature.
TIMEOUT = 5.0
_MAX_ANSWER = 64 * 1024


class HTTPWitness:
    """One witness: its submission URL prefix and its verifier key."""

    def __init__(self, url: str, verifier_key: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.verifier_key = verifier_key
        self.name = cosigner_name(verifier_key)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HTTPWitness({self.name!r} at {self.url})"

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: bytes) -> str:
        """Submit a checkpoint with the consistency proof from ``old_size``; return its cosignature line.

        Raises:
            WitnessRefused: the witness answered with an error status (409 carries its size).
            AuditChainError: the answer holds no valid cosignature of this checkpoint.
            OSError: the witness could not be reached.
        """
        lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
        body = "".join(lines).encode() + note
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's configuration
            f"{self.url}/add-checkpoint", data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        answer = self._fetch(request)
        cosignature = open_cosignature(note + answer, self.verifier_key)
        return cosignature.line

    def latest(self, origin: str, log_key: str) -> tuple[Checkpoint, Cosignature] | None:
        """Return the latest checkpoint of ``origin`` this witness cosigned, both signatures verified.

        Returns None when the witness never cosigned one.

        Raises:
            AuditChainError: the answer is not a checkpoint signed by the log and cosigned by the witness.
            WitnessRefused: the witness answered with another error status.
            OSError: the witness could not be reached.
        """
        query = urllib.parse.urlencode({"origin": origin})
        request = urllib.request.Request(f"{self.url}/latest?{query}")  # noqa: S310 - configured URL
        try:
            note = self._fetch(request)
        except WitnessRefused as refusal:
            if refusal.status == 404:
                return None
            raise
        checkpoint = open_checkpoint(note, log_key, origin=origin)
        return checkpoint, open_cosignature(note, self.verifier_key)

    def _fetch(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return bytes(response.read(_MAX_ANSWER))
        except urllib.error.HTTPError as error:
            text = error.read(_MAX_ANSWER).decode("utf-8", "replace").strip()
            size = int(text) if error.code == 409 and text.isdigit() else None
            raise WitnessRefused(
                f"The witness {self.name!r} answered {error.code}: {text[:200]}", status=error.code, size=size
            ) from None
        except urllib.error.URLError as error:
            raise OSError(f"The witness {self.name!r} at {self.url} is unreachable: {error.reason}") from None


__all__ = ["HTTPWitness"]
