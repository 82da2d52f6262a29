"""Throwaway SoftHSM2 tokens for tests (Debian package ``softhsm2``).

Every call of :func:`create_token` with a fresh directory gives a test its own configuration file
and token directory, and points ``SOFTHSM2_CONF`` at them. SoftHSM2 reads that variable when the
module is initialised, and python-pkcs11 keeps one initialised copy of each module per process, so
:func:`create_token` also unloads that copy: the next ``pkcs11.lib()`` initialises the module afresh
and sees this test's tokens. Callers restore ``SOFTHSM2_CONF`` themselves (``monkeypatch``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pkcs11

DEFAULT_LABEL = "carnet-test"
USER_PIN = "24681357"
SO_PIN = "97531864"

# Debian links the first path to the multiarch one; other distributions use the later ones.
_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/*-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


class SoftHSMNotInstalledError(RuntimeError):
    """SoftHSM2 (its module or ``softhsm2-util``) is not installed on this machine."""


def find_module() -> str | None:
    """Return the path of the SoftHSM2 PKCS#11 module, or None when it is not installed."""
    for pattern in _MODULE_PATHS:
        for path in sorted(glob.glob(pattern)):
            if Path(path).is_file():
                return path
    return None


def find_util() -> str | None:
    """Return the path of ``softhsm2-util``, or None when it is not installed."""
    return shutil.which("softhsm2-util")


def is_available() -> bool:
    """Tell whether both the module and ``softhsm2-util`` are installed."""
    return find_module() is not None and find_util() is not None


def _write_config(directory: Path) -> Path:
    config = directory / "softhsm2.conf"
    if not config.exists():
        tokens = directory / "tokens"
        tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.write_text(
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
            "slots.mechanisms = ALL\n"
            "library.reset_on_fork = false\n"
        )
    return config


def create_token(
    directory: Path, label: str = DEFAULT_LABEL, pin: str = USER_PIN, so_pin: str = SO_PIN
) -> tuple[str, str, str]:
    """Initialise a token labelled ``label`` under ``directory`` and return (module path, label, PIN).

    Calling it again with the same directory adds another token to the same configuration.

    Raises:
        SoftHSMNotInstalledError: SoftHSM2 is not installed.
        RuntimeError: ``softhsm2-util`` failed.
    """
    module, util = find_module(), find_util()
    if module is None or util is None:
        raise SoftHSMNotInstalledError("SoftHSM2 is not installed; run `apt-get install -y softhsm2`.")
    config = _write_config(directory)
    os.environ["SOFTHSM2_CONF"] = str(config)
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOFTHSM2_CONF": str(config)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"softhsm2-util could not initialise token {label!r}: {result.stderr.strip()}")
    pkcs11.unload(module)
    return module, label, pin
