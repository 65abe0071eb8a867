"""The gateway's pacing rules, as the sandbox plays them (so a broadcaster's pacing is proven).

Two rules per instance, both off by default:

- **Rate limit** (``per_minute``): once an instance has sent ``per_minute`` messages within the
  last 60 s, a further send is answered ``429`` with ``Retry-After`` (the seconds until the
  oldest send in that window leaves it, rounded up; or a fixed ``retry_after``) and is not
  made.
- **Strict anti-spam** (``strict``): a send that would make an instance send more than
  ``burst`` messages within ``window`` seconds (defaults: more than 3 within 5 s) gets the
  instance disconnected by "WhatsApp"; that send and every later one are refused as for any
  instance that is not connected.

Times are wall-clock seconds (``time.time()``), the clock of the send records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from ._validation import is_int, is_number

#: The rate limit's window, seconds.
RATE_WINDOW = 60.0


@attrs.define
class Pacing:
    per_minute: int | None = None
    #: A fixed ``Retry-After`` for the rate limit; None: computed from the send times.
    retry_after: float | None = None
    strict: bool = False
    burst: int = 3
    window: float = 5.0

    def __attrs_post_init__(self) -> None:
        self.limit(self.per_minute, retry_after=self.retry_after)
        self.set_strict(self.strict, burst=self.burst, window=self.window)

    def limit(self, per_minute: int | None, *, retry_after: float | None = None) -> None:
        if per_minute is not None and (not is_int(per_minute) or per_minute < 1):
            raise ValueError("per_minute must be a positive integer, or None for no limit")
        if retry_after is not None and (not is_number(retry_after) or retry_after < 0):
            raise ValueError("retry_after must be a non-negative number of seconds")
        self.per_minute = per_minute
        self.retry_after = retry_after

    def set_strict(self, enabled: bool, *, burst: int = 3, window: float = 5.0) -> None:
        if not isinstance(enabled, bool):
            raise ValueError("strict must be a boolean")
        if not is_int(burst) or burst < 1:
            raise ValueError("burst must be a positive integer")
        if not is_number(window) or window <= 0:
            raise ValueError("window must be a positive number of seconds")
        self.strict = enabled
        self.burst = burst
        self.window = window

    def throttled(self, times: Sequence[float], now: float) -> float | None:
        """The ``Retry-After`` seconds for a send now, or None when the rate limit allows it.

        ``times`` are the instance's earlier sends, oldest first."""
        if self.per_minute is None:
            return None
        recent = _within(times, now, RATE_WINDOW)
        if len(recent) < self.per_minute:
            return None
        if self.retry_after is not None:
            return self.retry_after
        oldest = recent[-self.per_minute]
        return max(1, math.ceil(oldest + RATE_WINDOW - now))

    def is_spam(self, times: Sequence[float], now: float) -> bool:
        """Whether a send now makes more than ``burst`` sends within ``window`` seconds."""
        return self.strict and len(_within(times, now, self.window)) + 1 > self.burst

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _within(times: Sequence[float], now: float, seconds: float) -> list[float]:
    """The times less than ``seconds`` before ``now``, oldest first (``times`` are sorted)."""
    recent: list[float] = []
    for at in reversed(times):
        if now - at >= seconds:
            break
        recent.append(at)
    recent.reverse()
    return recent
