"""Tracking URIs: the default store, password masking, and a quick check that a server answers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from digitexp.errors import TrackingError

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")


def mask_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to print and log)."""
    return mask_text(uri)


def without_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user:password@, user, password)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def check_server_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request

    try:
        plain, user, password = without_credentials(uri)
        request = urllib.request.Request(plain.rstrip("/") + "/health")
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an old server without /health): let MLflow talk to it
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"{mask_uri(uri)}: tracking server unreachable ({mask_text(str(reason))})"
        ) from None
