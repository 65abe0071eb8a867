"""What every command shares: the command line's words for the library's hints, and the
stand-in logout path.

The library phrases its hints for Python (``created.instance.api_instance_name``,
``instances.list()``); a person at the command line needs flags and commands. Each hint has a
code (``APIError.hint_code``); :data:`_HINTS` says each one for the command line, in one
table. A library without hint codes is recognised by its hint's words instead (only as a
fallback); a hint this table does not know is shown as the library wrote it.
"""

from __future__ import annotations

import re
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
    #: The library's own wording of this hint, for a library that sets no ``hint_code``.
    words: re.Pattern[str]
    #: The hint as the command line says it.
    says: Callable[[APIError], str]


_HINTS = (
    _Hint(
        "api_name_expected",
        re.compile(r"^Every call after create takes the API instance name"),
        lambda _: (
            "Every command after `wachat instances create` takes the API name it printed "
            "(t1_..._store), not the friendly name; `wachat instances list` shows both"
        ),
    ),
    _Hint(
        "not_wachat_base_url",
        re.compile(r"^That answer is not Wachat's"),
        lambda _: (
            f"That answer is not Wachat's: check --base-url or ${BASE_URL_ENV} (it should "
            "end in /api/v1; leave both out for Wachat's own)"
        ),
    ),
    _Hint(
        "wait_exceeds_max_retry_after",
        re.compile(r"^The server asked to wait .* more than max_retry_after"),
        lambda e: (
            f"The server asked to wait{_wait(e)}, longer than a command waits by itself: "
            "run it again after that"
        ),
    ),
    _Hint(
        "server_asked_wait",
        re.compile(r"^The server asked to wait"),
        lambda e: f"The server asked to wait{_wait(e)}: run the command again after that",
    ),
    _Hint(
        "logout_first",
        re.compile(r"^The instance is still connected; log it out first"),
        lambda _: (
            "Log it out first: `wachat instances logout API_NAME`, or in one step "
            "`wachat instances delete --logout API_NAME`"
        ),
    ),
    _Hint(
        "sandbox_key",
        re.compile(r"(?!)"),  # new with hint codes: no older wording to recognise
        lambda _: (
            "A sandbox accepts only the key it printed: export the "
            f"`{API_KEY_ENV}=...` line `wachat sandbox` showed, or pass --api-key"
        ),
    ),
)


def _known(error: APIError) -> _Hint | None:
    code = getattr(error, "hint_code", None)  # set by libraries that have hint codes
    for hint in _HINTS:
        if code == hint.code or (code is None and error.hint and hint.words.search(error.hint)):
            return hint
    return None


def hint_code(error: APIError) -> str | None:
    """What ``error``'s hint is about (``api_name_expected``, ...), its words recognised where
    the library sets no code; None when it has no hint this table knows."""
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
