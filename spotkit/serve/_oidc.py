"""OIDC logins whose calls to the identity provider never hold the server.

Tiled 0.2.20's ``tiled.authenticators:OIDCAuthenticator`` calls the provider — its discovery
document, its JWKS and, for each login, the code exchange at its token endpoint — with
blocking ``httpx`` calls inside the server's event loop: while a provider is slow, every
request of the server waits (up to httpx's 5 s per call). :class:`OIDCAuthenticator` is the
same authenticator (the same arguments, the same checks of the id token: signature against
the provider's JWKS, audience, issuer, expiry, ``at_hash``) with those calls made in a worker
thread with a deadline (``timeout``). :func:`spotkit.serve.build_app` runs it wherever
``serve.yaml`` names Tiled's.

A provider that does not answer within ``timeout`` makes that login fail with 504 naming
the provider (502 when it answers with an error), logged with the reason; the other
requests of the server are not held meanwhile. The discovery document is fetched in the
background when the server starts; until the provider has answered it, the login's first
step (``/auth/provider/<name>/authorize``) answers 503 "try again".
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
from typing import Any

import httpx
from fastapi import HTTPException
from tiled.authenticators import OIDCAuthenticator as _TiledOIDCAuthenticator
from tiled.server.protocols import UserSessionState
from tiled.server.utils import get_current_url

__all__ = ["TILED_OIDC", "OIDCAuthenticator"]

logger = logging.getLogger("spotkit.serve")

#: the authenticator ``serve.yaml`` names, which :class:`OIDCAuthenticator` stands in for
TILED_OIDC = "tiled.authenticators:OIDCAuthenticator"


class OIDCAuthenticator(_TiledOIDCAuthenticator):
    """Tiled's OIDC authenticator with the calls to the provider off the event loop.

    Parameters
    ----------
    audience, client_id, client_secret, well_known_uri, confirmation_message,
    redirect_on_success, redirect_on_failure, user_id_claim
        As Tiled's ``OIDCAuthenticator``.
    timeout : float
        Seconds the provider has to answer each call (default 10).
    """

    def __init__(self, audience: str, client_id: str, client_secret: str,
                 well_known_uri: str, confirmation_message: str = "",
                 redirect_on_success: str | None = None,
                 redirect_on_failure: str | None = None, user_id_claim: str = "sub",
                 timeout: float = 10.0):
        super().__init__(audience=audience, client_id=client_id,
                         client_secret=client_secret, well_known_uri=well_known_uri,
                         confirmation_message=confirmation_message,
                         redirect_on_success=redirect_on_success,
                         redirect_on_failure=redirect_on_failure,
                         user_id_claim=user_id_claim)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"OIDCAuthenticator timeout must be a positive number of "
                             f"seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self._fetching = threading.Lock()
        self._fetch_in_background()

    # -- the provider's discovery document, fetched off the event loop ----------------

    @functools.cached_property
    def _config_from_oidc_url(self) -> dict[str, Any]:
        response = httpx.get(self._well_known_url, timeout=self.timeout)
        response.raise_for_status()
        return dict(response.json())

    def _discovered(self) -> bool:
        return "_config_from_oidc_url" in self.__dict__

    def _fetch(self) -> None:
        if not self._fetching.acquire(blocking=False):
            return
        try:
            self._config_from_oidc_url  # noqa: B018 (fetch and keep)
        except Exception as exc:
            logger.warning("identity provider %s did not answer: %s: %s",
                           self._well_known_url, type(exc).__name__, exc)
        finally:
            self._fetching.release()

    def _fetch_in_background(self) -> None:
        threading.Thread(target=self._fetch, name="spotkit-oidc-discovery",
                         daemon=True).start()

    @property
    def authorization_endpoint(self) -> httpx.URL:
        """Where the browser logs in (read in the event loop: never fetched there)."""
        if not self._discovered():
            self._fetch_in_background()
            raise HTTPException(status_code=503, detail=(
                "the identity provider has not answered yet; try again in a moment"))
        return httpx.URL(str(self._config_from_oidc_url.get("authorization_endpoint")))

    def keys(self) -> list:
        """The provider's signing keys (JWKS), kept for an hour."""
        return _jwks(self.jwks_uri, self.timeout)

    # -- a login --------------------------------------------------------------------

    async def authenticate(self, request: Any) -> UserSessionState | None:
        """Exchange the code the browser came back with and check the id token, in a
        worker thread; None (401) when the provider refuses or the token is not valid."""
        import anyio

        code = request.query_params.get("code")
        if not code:
            logger.warning("login refused: no authorization code in the request")
            return None
        return await anyio.to_thread.run_sync(self._login, code, get_current_url(request))

    def _login(self, code: str, redirect_uri: str) -> UserSessionState | None:
        try:
            return self._exchange(code, redirect_uri)
        except httpx.TimeoutException as exc:
            logger.warning("login: the identity provider did not answer within %g s (%s)",
                           self.timeout, type(exc).__name__)
            raise HTTPException(status_code=504, detail=(
                f"the identity provider did not answer within {self.timeout:g} s; try "
                "again later")) from exc
        except (httpx.TransportError, httpx.HTTPStatusError, ValueError) as exc:
            logger.warning("login: the identity provider failed: %s: %s",
                           type(exc).__name__, exc)
            raise HTTPException(status_code=502, detail=(
                f"the identity provider failed ({type(exc).__name__}); try again "
                "later")) from exc

    def _exchange(self, code: str, redirect_uri: str) -> UserSessionState | None:
        import jwt

        secret = self._client_secret.get_secret_value()
        basic = base64.b64encode(f"{self._client_id}:{secret}".encode()).decode()
        response = httpx.post(
            self.token_endpoint, timeout=self.timeout,
            data={"grant_type": "authorization_code", "client_id": self._client_id,
                  "redirect_uri": redirect_uri, "code": code, "client_secret": secret,
                  "scope": "offline_access openid"},
            headers={"Authorization": f"Basic {basic}"})
        if response.is_error:
            logger.warning("login refused by the identity provider: %s %s",
                           response.status_code, response.text[:200])
            return None
        body = response.json()
        try:
            claims = self.decode_token(body["id_token"], body.get("access_token"))
        except (KeyError, TypeError, jwt.PyJWTError) as exc:
            logger.warning("login refused: the provider's id token is not valid (%s: %s)",
                           type(exc).__name__, exc)
            return None
        user = claims.get(self.user_id_claim)
        if not isinstance(user, str) or not user:
            logger.warning("login refused: the id token has no %r claim", self.user_id_claim)
            return None
        return UserSessionState(user, {})

    def __repr__(self) -> str:
        return f"<spotkit OIDCAuthenticator {self._well_known_url}>"


@functools.lru_cache(maxsize=16)
def _jwks_cached(uri: str, timeout: float, hour: int) -> tuple:
    response = httpx.get(uri, timeout=timeout)
    response.raise_for_status()
    return tuple(response.json().get("keys", []))


def _jwks(uri: str, timeout: float) -> list:
    import time

    return list(_jwks_cached(uri, timeout, int(time.time() // 3600)))
