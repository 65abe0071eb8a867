"""Test helpers shipped with the library: the fake Wachat server and its faults.

::

    from wachat_async.testing import FakeWachat, Fault

    async with FakeWachat(api_keys={"test-key"}) as server:
        server.inject(Fault.status(429, retry_after=1), path="/instance/create", times=2)
        ...

What a phone and a customer do (scan a QR code, unlink, send a message in) is also open over
HTTP under ``CONTROL_PREFIX`` (``/_sandbox``) for a sandbox run in another process: see
``wachat_async.testing._control``. A person does it in a browser, on the dev phone page at the
server's root (``server.dev_phone_url``): instances and their live QR codes, a chat per
instance, answering as the customer, the webhook delivery log.

:class:`Customer` talks to a bot through the sandbox as a customer would (``send``,
``choose``, ``expect_reply``). The pytest plugin (installed with the package) adds the
``wachat_server``, ``wachat`` and ``customer`` fixtures; see
``wachat_async.testing.pytest_plugin``.
"""

from ._control import CONTROL_PREFIX
from ._customer import Customer, Reply
from ._deliveries import Delivery
from ._faults import Fault, FaultKind
from ._gate import API_PREFIX, Exchange, RecordedRequest
from ._server import FakeWachat
from ._state import FakeInstance, FakeWebhook

__all__ = [
    "API_PREFIX",
    "CONTROL_PREFIX",
    "Customer",
    "Delivery",
    "Exchange",
    "FakeInstance",
    "FakeWachat",
    "FakeWebhook",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
]
