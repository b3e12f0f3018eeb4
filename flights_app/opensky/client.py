"""The OpenSky REST client: HTTP, tokens and rate limits, and nothing of Kafka.

``fetch_states()`` returns a ``PollResult`` for every outcome, so the caller
never has to catch anything: a success with the parsed response, or a
failure with a reason code and how long to wait.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from flights_app.opensky.auth import AuthError, TokenProvider
from flights_app.opensky.parse import ResponseFormatError, StatesResponse, parse_states_response
from flights_app.settings import BoundingBox

#: A response larger than this is refused unread: a global poll is about 1.5 MB.
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class PollResult:
    """What one request to ``/states/all`` gave.

    ``response`` is set on success. On failure, ``failure`` is a reason code
    (``http_429``, ``http_503``, ``timeout``, ``connection``, ``malformed_json``,
    ``truncated_body``, ``auth``...) and ``retry_after_s`` the server's own wait,
    if it gave one. ``credits_remaining`` comes from ``X-Rate-Limit-Remaining``.
    """

    response: StatesResponse | None = None
    failure: str | None = None
    detail: str = ""
    retry_after_s: float | None = None
    credits_remaining: int | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.response is not None


def _header_number(headers, name: str) -> float | None:
    value = headers.get(name)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


class OpenSkyClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        bbox: BoundingBox | None = None,
        tokens: TokenProvider | None = None,
        timeout_s: float = 20.0,
    ):
        self._session = session
        self._url = base_url.rstrip("/") + "/states/all"
        # extended=1: each state also carries the aircraft's category (its 18th field)
        self._params = {**(bbox.as_query() if bbox else {}), "extended": "1"}
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def url(self) -> str:
        return self._url

    async def fetch_states(self, at_time: int | None = None) -> PollResult:
        """The states now, or (``at_time``, authenticated clients only) the snapshot OpenSky held then."""
        params = self._params if at_time is None else {**self._params, "time": str(int(at_time))}
        headers = {"Accept": "application/json"}
        if self._tokens is not None:
            try:
                headers["Authorization"] = f"Bearer {await self._tokens.token()}"
            except AuthError as error:
                return PollResult(failure="auth", detail=str(error), permanent=error.permanent)
        try:
            async with self._session.get(
                self._url, params=params, headers=headers, timeout=self._timeout
            ) as response:
                credits = _header_number(response.headers, "X-Rate-Limit-Remaining")
                credits = int(credits) if credits is not None else None
                if response.status == 429:
                    retry = _header_number(response.headers, "X-Rate-Limit-Retry-After-Seconds")
                    return PollResult(
                        failure="http_429", detail="OpenSky rate limit: out of credits",
                        retry_after_s=retry if retry is not None else DEFAULT_RETRY_AFTER_S,
                        credits_remaining=credits,
                    )
                if response.status == 401 and self._tokens is not None:
                    self._tokens.invalidate()  # expired or revoked: fetch a new one next time
                    return PollResult(failure="http_401", detail="token refused; refreshing", credits_remaining=credits)
                if response.status != 200:
                    return PollResult(
                        failure=f"http_{response.status}", detail=f"HTTP {response.status} from {self._url}",
                        credits_remaining=credits,
                    )
                if (response.content_length or 0) > MAX_BODY_BYTES:
                    return PollResult(failure="body_too_large", detail=f"{response.content_length} bytes")
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        return PollResult(failure="body_too_large", detail=f"more than {MAX_BODY_BYTES} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
        except TimeoutError:
            return PollResult(failure="timeout", detail=f"no answer within {self._timeout.total:g} s")
        except aiohttp.ClientPayloadError as error:
            return PollResult(failure="truncated_body", detail=type(error).__name__)
        except aiohttp.ClientError as error:
            return PollResult(failure="connection", detail=f"{type(error).__name__}: {error}"[:300])
        try:
            parsed = parse_states_response(body)
        except ResponseFormatError as error:
            return PollResult(failure=error.reason, detail=error.detail, credits_remaining=credits)
        return PollResult(response=parsed, credits_remaining=credits)
