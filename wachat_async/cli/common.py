"""What every command shares: the command line's words for the library's hints, and the
stand-in logout path.

The library phrases its hints for Python (``created.instance.api_instance_name``,
``instances.list()``); a person at the command line needs flags and commands. Each hint has a
code (``APIError.hint_code``, listed in :mod:`wachat_async._status`); :data:`_HINTS` says
each one for the command line, in one table. A hint this table does not know is shown as the
library wrote it.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .._config import API_KEY_ENV, BASE_URL_ENV
from ..errors import APIError
from .outcome import Failure

#: Logout has no published path. This is the sandbox's stand-in (and the likeliest guess for
#: Wachat's), sent through the library's escape hatch, ``AsyncWachat.request``; one place to
#: change once Wachat publishes it.
LOGOUT_METHOD, LOGOUT_PATH = "DELETE", "/instance/logout"


def _wait(error: APIError) -> str:
    return "" if error.retry_after is None else f" {error.retry_after:g} s"


@attrs.frozen
class _Hint:
    code: str
    #: The hint as the command line says it.
    says: Callable[[APIError], str]


_HINTS = (
    _Hint(
        "api_instance_name",
        lambda _: (
            "Every command after `wachat instances create` takes the API name it printed "
            "(t1_..._store), not the friendly name; `wachat instances list` shows both"
        ),
    ),
    _Hint(
        "not_wachat",
        lambda _: (
            f"That answer is not Wachat's: check --base-url or ${BASE_URL_ENV} (it should "
            "end in /api/v1; leave both out for Wachat's own)"
        ),
    ),
    _Hint(
        "retry_after_too_long",
        lambda e: (
            f"The server asked to wait{_wait(e)}, longer than a command waits by itself: "
            "run it again after that"
        ),
    ),
    _Hint(
        "retry_after",
        lambda e: f"The server asked to wait{_wait(e)}: run the command again after that",
    ),
    _Hint(
        "logout_first",
        lambda _: (
            "Log it out first: `wachat instances logout API_NAME`, or in one step "
            "`wachat instances delete --logout API_NAME`"
        ),
    ),
    _Hint(
        "sandbox_key",
        lambda _: (
            "A sandbox accepts only the key it printed: export the "
            f"`{API_KEY_ENV}=...` line `wachat sandbox` showed, or pass --api-key"
        ),
    ),
)


_BY_CODE = {hint.code: hint for hint in _HINTS}


def _known(error: APIError) -> _Hint | None:
    return None if error.hint_code is None else _BY_CODE.get(error.hint_code)


def hint_code(error: APIError) -> str | None:
    """What ``error``'s hint is about (``api_instance_name``, ...); None when it has no hint
    this table knows."""
    known = _known(error)
    return None if known is None else known.code


def cli_hint(error: APIError) -> str | None:
    """``error``'s hint in the command line's words (the library's when this table has none)."""
    known = _known(error)
    return error.hint if known is None else known.says(error)


def phrased_for_cli(failure: Failure, error: APIError) -> Failure:
    """``failure`` (made from ``error``) with the hint said for the command line."""
    hint = cli_hint(error)
    if hint == error.hint or hint is None:
        return failure
    text = failure.text
    if error.hint and error.hint in text:
        text = text.replace(error.hint, hint)
    else:
        text = f"{text}. {hint}"
    return attrs.evolve(failure, hint=hint, line=text)
