"""The API's operations, grouped as the client exposes them: ``wa.instances``, ``wa.messages``,
``wa.webhooks``. Each operation only describes its request and how to read the answer; the
executor does the rest."""
