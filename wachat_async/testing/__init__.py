"""Test helpers shipped with the library: the fake Wachat server and its faults.

::

    from wachat_async.testing import FakeWachat, Fault

    async with FakeWachat(api_keys={"test-key"}) as server:
        server.inject(Fault.status(429, retry_after=1), path="/instance/create", times=2)
        ...

The pytest plugin (installed with the package) adds the ``wachat_server`` and ``wachat``
fixtures; see ``wachat_async.testing.pytest_plugin``.
"""

from ._faults import Fault, FaultKind
from ._server import Delivery, Exchange, FakeInstance, FakeWachat, FakeWebhook, RecordedRequest

__all__ = [
    "Delivery",
    "Exchange",
    "FakeInstance",
    "FakeWachat",
    "FakeWebhook",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]
