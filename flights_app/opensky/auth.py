"""OAuth2 client-credentials tokens for OpenSky, cached and refreshed before expiry.

The client secret and the tokens never appear in a log line, an exception
message or a repr.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from flights_app.settings import Secret

#: Refresh this long before the token expires, so no request carries a dying token.
REFRESH_MARGIN_S = 60.0
DEFAULT_TOKEN_LIFETIME_S = 1800.0


class AuthError(RuntimeError):
    """Getting a token failed. ``permanent`` means retrying will not help (wrong credentials)."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class TokenProvider:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        *,
        timeout_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._session = session
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._token: Secret | None = None
        self._expires_at = 0.0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._client_id!r}, token_url={self._token_url!r})"

    def invalidate(self) -> None:
        """Forget the token (the API answered 401): the next call fetches a new one."""
        self._token = None
        self._expires_at = 0.0

    async def token(self) -> Secret:
        if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
            await self._refresh()
        return self._token

    async def _refresh(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": str(self._client_secret),
        }
        try:
            async with self._session.post(self._token_url, data=form, timeout=self._timeout) as response:
                status = response.status
                payload = await response.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise AuthError(
                f"OpenSky token endpoint {self._token_url} failed: {type(error).__name__}", permanent=False
            ) from None
        if status in (400, 401, 403):
            raise AuthError(
                f"OpenSky rejected the client credentials for client id {self._client_id!r} "
                f"(HTTP {status}): check OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET",
                permanent=True,
            )
        if status != 200:
            raise AuthError(f"OpenSky token endpoint answered HTTP {status}", permanent=False)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError("OpenSky token endpoint answered without an access_token", permanent=False)
        lifetime = payload.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        self._token = Secret(token)
        self._expires_at = self._clock() + float(lifetime)
        self.refreshes += 1
