"""The I/O edge: send one :class:`OutboundRequest` over HTTP and say how it went."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from worker.actions.requests import OutboundRequest
from worker.actions.retry import (
    Failure,
    failure_for_exception,
    failure_for_status,
    parse_retry_after,
)

_BODY_EXCERPT_CHARS = 200


async def send_request(session: aiohttp.ClientSession, request: OutboundRequest) -> Failure | None:
    """Send ``request``; ``None`` on a 2xx answer, else the classified :class:`Failure`.

    Never raises for transport problems: they become retriable failures. The error text names
    the request by :attr:`OutboundRequest.display`, which has no resolved secrets.
    """
    timeout = aiohttp.ClientTimeout(total=request.timeout_s)
    try:
        async with session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            json=request.json,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                await response.read()
                return None
            body = await _excerpt(response)
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), datetime.now(tz=UTC)
            )
            failure = failure_for_status(
                response.status, response.reason or "", body, retry_after_s=retry_after
            )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        failure = failure_for_exception(exc)
    return Failure(
        error=f"{request.display}: {failure.error}",
        retriable=failure.retriable,
        retry_after_s=failure.retry_after_s,
    )


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    try:
        raw = await response.content.read(_BODY_EXCERPT_CHARS * 4)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    text = raw.decode("utf-8", errors="replace")
    return " ".join(text.split())[:_BODY_EXCERPT_CHARS]
