"""Default headers are checked by name without regard to case, as HTTP reads names: a
reserved header in any case is refused like its usual spelling, and two names that differ only
by case (one header, sent twice) are refused naming both."""

from __future__ import annotations

import pytest

from tests.conftest import KEY
from wachat_async import AsyncWachat, InvalidRequestError, Wachat
from wachat_async._config import Settings

LOOPBACK = "http://127.0.0.1:9/api/v1"
CLIENTS = [AsyncWachat, Wachat]


@pytest.mark.parametrize(
    "name",
    ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"],
)
@pytest.mark.parametrize("client", CLIENTS)
def test_authorization_is_refused_in_any_case(
    client: type[AsyncWachat] | type[Wachat], name: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client(KEY, base_url=LOOPBACK, default_headers={name: "Bearer other"})
    assert str(caught.value) == (
        "default_headers must not set Authorization: the client sends the api_key"
    )


@pytest.mark.parametrize(
    "name", ["host", "HOST", "content-LENGTH", "Transfer-encoding", "CONNECTION"]
)
def test_reserved_headers_are_refused_in_any_case(name: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        Settings(KEY, base_url=LOOPBACK, default_headers={name: "x"})
    assert f"must not set {name}: the client sets it" in str(caught.value)


@pytest.mark.parametrize("name", ["Proxy-Authorization", "proxy-authorization"])
def test_proxy_credentials_are_refused_as_a_default_header(name: str) -> None:
    """Every request would carry them to the API; they belong in the proxy URL."""
    with pytest.raises(InvalidRequestError) as caught:
        Settings(KEY, base_url=LOOPBACK, default_headers={name: "Basic dTpwdw=="})
    assert "proxy='http://user:password@host:port'" in str(caught.value)
    assert "dTpwdw" not in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Tenant": "a", "x-tenant": "b"},
        {"user-agent": "mine/1", "User-Agent": "mine/2"},
        {"Accept": "application/json", "X-Other": "1", "ACCEPT": "*/*"},
    ],
)
@pytest.mark.parametrize("client", CLIENTS)
def test_two_names_differing_only_by_case_are_refused(
    client: type[AsyncWachat] | type[Wachat], headers: dict[str, str]
) -> None:
    first, *_, last = [n for n in headers if n.lower() == next(iter(headers)).lower()]
    with pytest.raises(InvalidRequestError) as caught:
        client(KEY, base_url=LOOPBACK, default_headers=headers)
    assert str(caught.value) == (
        f"default_headers sets {first!r} and {last!r}: header names ignore case, so they are "
        "one header; keep one"
    )


def test_a_header_in_any_case_is_kept_as_given() -> None:
    headers = {"user-agent": "mine/1", "x-TENANT": "a", "Accept-Language": "id"}
    assert dict(Settings(KEY, base_url=LOOPBACK, default_headers=headers).default_headers) == (
        headers
    )
