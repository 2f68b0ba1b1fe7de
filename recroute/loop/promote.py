"""Promoting a bundle: a ``Promote`` is any callable ``promote(bundle_path) -> dict`` that makes the
bundle live and returns what the server said, or raises :class:`PromotionError` with its reason.

:func:`gateway_reload` is the gateway's hot reload: ``POST {url}/admin/reload`` with
``{"bundle": PATH}`` and ``Authorization: Bearer KEY``; 200 ``{"status": "reloaded", "bundle",
"checksum"}``, a refusal (409/422 ``{"error": reason}``) leaves the old bundle serving.
:func:`gateway_serving` reads which bundle the gateway serves (``/healthz``'s ``bundle_checksum``): a
gateway restarted on its start-up bundle is put back on the loop's live one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recroute.errors import DataError

Promote = Callable[[str], dict]
Serving = Callable[[], "str | None"]  # the checksum of the bundle the server serves now (None: no answer)


class PromotionError(RuntimeError):
    """The bundle was not made live: ``refused`` (the server said no: the old bundle keeps serving, do
    not retry) or not (no answer: retry later)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def admin_call(method: str, endpoint: str, body: dict | None, headers: dict, timeout_s: float, what: str) -> dict:
    """The gateway's JSON answer to ``method endpoint`` (an /admin/* call); PromotionError on no answer
    (``refused=False``) or a non-200 status (``refused`` for a 4xx), ``what`` naming the call."""
    import httpx

    try:
        response = httpx.request(method, endpoint, json=body, headers=headers, timeout=timeout_s)
    except httpx.TransportError as exc:
        raise PromotionError(f"{endpoint}: no answer ({type(exc).__name__}: {exc})") from None
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200]}
    if response.status_code != 200:
        reason = doc.get("error") if isinstance(doc, dict) else doc
        raise PromotionError(f"{what} ({response.status_code}): {reason}", refused=400 <= response.status_code < 500)
    return doc if isinstance(doc, dict) else {"response": doc}


def gateway_reload(url: str, key: str | None = None, timeout_s: float = 120.0) -> Promote:
    """A Promote that hot-reloads the gateway at ``url`` (``http://127.0.0.1:8080``)."""
    if not url.startswith(("http://", "https://")):
        raise DataError(f"--gateway must be an http(s) URL; got {url!r}")
    endpoint = url.rstrip("/") + "/admin/reload"
    headers = {"authorization": f"Bearer {key}"} if key else {}

    def promote(bundle: str) -> dict:
        return admin_call("POST", endpoint, {"bundle": str(Path(bundle).resolve())}, headers, timeout_s,
                          f"{endpoint} refused {bundle}")

    return promote


def gateway_serving(url: str, timeout_s: float = 10.0) -> Serving:
    """A Serving that reads ``bundle_checksum`` from the gateway's ``GET /healthz`` (None when it does
    not answer)."""
    import httpx

    endpoint = url.rstrip("/") + "/healthz"

    def serving() -> str | None:
        try:
            doc = httpx.get(endpoint, timeout=timeout_s).json()
        except (httpx.TransportError, ValueError):
            return None
        return doc.get("bundle_checksum") if isinstance(doc, dict) else None

    return serving


class ShadowClient:
    """The gateway's shadow endpoints at ``url``: :meth:`install` (``POST /admin/shadow``), :meth:`remove`
    (``DELETE /admin/shadow``) and :meth:`serving` (``/healthz``'s ``shadow_checksum``). A refusal (4xx) raises
    :class:`PromotionError` with ``refused=True``; no answer, with ``refused=False``."""

    def __init__(self, url: str, key: str | None = None, timeout_s: float = 120.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise DataError(f"--gateway must be an http(s) URL; got {url!r}")
        self.url = url.rstrip("/")
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.timeout_s = timeout_s

    def _call(self, method: str, body: dict | None = None) -> dict:
        endpoint = self.url + "/admin/shadow"
        return admin_call(method, endpoint, body, self.headers, self.timeout_s, f"{method} {endpoint}")

    def install(self, bundle: str, epsilon: float, tau: float = 0.0) -> dict:
        """Serve ``bundle`` as the shadow with ``epsilon`` and ``tau``; the gateway's answer."""
        return self._call("POST", {"bundle": str(Path(bundle).resolve()), "epsilon": float(epsilon), "tau": float(tau)})

    def remove(self) -> dict:
        return self._call("DELETE")

    def serving(self) -> tuple[bool, str | None]:
        """(the gateway answered, the checksum of the shadow it serves or None)."""
        import httpx

        try:
            doc = httpx.get(self.url + "/healthz", timeout=10).json()
        except (httpx.TransportError, ValueError):
            return False, None
        return (True, doc.get("shadow_checksum")) if isinstance(doc, dict) else (False, None)
