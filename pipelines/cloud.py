"""Checking, before a run builds its pipeline, that its ``gs://`` paths can be reached: without credentials or
network the Cloud Storage client retries for minutes, so the run fails within seconds instead, saying what to
set up."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

GCS_HOST = "storage.googleapis.com"
TIMEOUT_S = 5.0
_verified = False  # access was checked in this process: the CLI checks before Beam loads, the run checks again


class CloudAccessError(RuntimeError):
    """A ``gs://`` path was given but Google Cloud Storage cannot be used from this machine."""


def gcs_paths(values: Iterable[str | None]) -> list[str]:
    """The values that name Cloud Storage (``gs://``, also inside ``--option=gs://...`` and ``@gs://`` manifests)."""
    found = []
    for value in values:
        text = (value or "").split("=", 1)[-1] if (value or "").startswith("--") else (value or "")
        if text.lstrip("@").startswith("gs://"):
            found.append(text)
    return found


def check_gcs_access(paths: list[str], timeout_s: float = TIMEOUT_S) -> None:
    """Raise CloudAccessError within about ``2 * timeout_s`` seconds when ``paths`` (``gs://``) cannot be used:
    the gcp extra is missing, no Application Default Credentials are found, or Cloud Storage (or the HTTPS proxy)
    does not accept a connection. Does nothing when ``paths`` is empty, or once access was verified in this
    process (the answer does not depend on which paths)."""
    global _verified
    if not paths or _verified:
        return
    what = f"{paths[0]} is on Google Cloud Storage"
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise CloudAccessError(f"{what}, which needs the gcp extra: pip install 'mirmatch[gcp]'") from None
    try:
        _within(timeout_s, google.auth.default)
    except DefaultCredentialsError:
        raise CloudAccessError(
            f"{what} but no Google Cloud credentials were found: run `gcloud auth application-default login`, "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file") from None
    except TimeoutError:
        raise CloudAccessError(f"{what} but looking for Google Cloud credentials took over {timeout_s:.0f} s: "
                               "set GOOGLE_APPLICATION_CREDENTIALS, and check the network") from None
    host, port = _endpoint()
    try:
        _within(timeout_s, lambda: socket.create_connection((host, port), timeout=timeout_s).close())
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CloudAccessError(f"{what} but {host}:{port} cannot be reached within {timeout_s:.0f} s ({reason}): "
                               "check the network connection, firewall and HTTPS_PROXY") from None
    _verified = True


def _endpoint() -> tuple[str, int]:
    """Where the Cloud Storage client connects: the HTTPS proxy when one is set, else Cloud Storage itself."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname or "", parsed.port or 80
    return GCS_HOST, 443


def _within(timeout_s: float, fn: Callable[[], object]) -> object:
    """``fn()``, or TimeoutError after ``timeout_s`` (name lookups have no timeout of their own)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")
