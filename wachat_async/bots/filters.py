"""Filters: tests on an incoming message, composed with ``&``, ``|`` and ``~``.

::

    from wachat_async.bots import F

    @router.message(F.text("menu", ignore_case=True) | F.command("start"))
    @router.message(F.list_reply("track"))
    @router.message(F.state("awaiting_order") & F.regex(r"^[A-Z]-\\d+$"))

Everything that can be checked is checked when the filter is made (a bad regular expression, a
number that is not one, an unknown message kind), and state names when the bot is built: a
typo is refused before the first message, never a handler that silently never matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol

from .. import _validate as check
from ..errors import InvalidRequestError
from ..webhooks.events import MessageKind, MessageReceived

__all__ = ["F", "Filter"]


class _Stateful(Protocol):
    @property
    def state(self) -> str | None: ...


class Message(Protocol):
    """What filters read of a :class:`wachat_async.bots.Message` (kept here, so the two
    modules do not import each other)."""

    @property
    def event(self) -> MessageReceived: ...
    @property
    def conversation(self) -> _Stateful: ...
    @property
    def text(self) -> str | None: ...
    @property
    def stripped(self) -> str | None: ...
    @property
    def folded(self) -> str | None: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def instance(self) -> str | None: ...
    @property
    def kind(self) -> MessageKind: ...
    @property
    def selected_id(self) -> str | None: ...


Test = Callable[[Message], bool]


class Filter:
    """A test on a :class:`~wachat_async.bots.Message`. ``a & b``, ``a | b``, ``~a`` compose;
    ``states`` are the state names it mentions (checked against the bot's when it is built), and
    ``wants_from_me`` says it asks about the bot's own messages (excluded unless it does)."""

    __slots__ = ("description", "exact_texts", "states", "test", "wants_from_me")

    def __init__(
        self,
        test: Test,
        description: str,
        *,
        states: frozenset[str] = frozenset(),
        wants_from_me: bool = False,
        exact_texts: frozenset[str] | None = None,
    ) -> None:
        self.test = test
        self.description = description
        self.states = states
        self.wants_from_me = wants_from_me
        #: For ``F.text(...)`` alone: the texts it accepts (the router looks them up).
        self.exact_texts = exact_texts

    def __call__(self, message: Message) -> bool:
        return self.test(message)

    def __repr__(self) -> str:
        return f"Filter({self.description})"

    def __and__(self, other: Filter) -> Filter:
        first, second = self.test, _filter(other).test
        return self._joined(other, "&", lambda m: first(m) and second(m))

    def __or__(self, other: Filter) -> Filter:
        first, second = self.test, _filter(other).test
        return self._joined(other, "|", lambda m: first(m) or second(m))

    def __invert__(self) -> Filter:
        test = self.test
        return Filter(
            lambda m: not test(m),
            f"~{self.description}",
            states=self.states,
            wants_from_me=self.wants_from_me,
        )

    def _joined(self, other: Filter, op: str, test: Test) -> Filter:
        return Filter(
            test,
            f"({self.description} {op} {other.description})",
            states=self.states | other.states,
            wants_from_me=self.wants_from_me or other.wants_from_me,
        )


def _filter(value: object) -> Filter:
    if not isinstance(value, Filter):
        raise InvalidRequestError(
            f"filters compose with other filters (F.text(...), F.regex(...), ...), got {value!r}"
        )
    return value


def _strings(field: str, values: Iterable[str]) -> tuple[str, ...]:
    items = tuple(values)
    if not items:
        raise InvalidRequestError(f"{field} needs at least one value")
    return tuple(check.text(field, v) for v in items)


class _Filters:
    """The filter constructors, as ``F.<name>``."""

    def text(self, *values: str, ignore_case: bool = False) -> Filter:
        """The text (or caption) is exactly one of ``values`` (surrounding spaces ignored)."""
        items = _strings("F.text", values)
        if ignore_case:
            folded = frozenset(v.strip().casefold() for v in items)
            return Filter(
                lambda m: m.folded in folded,
                f"text(ignore_case) in {sorted(folded)}",
            )
        exact = frozenset(v.strip() for v in items)
        return Filter(lambda m: m.stripped in exact, f"text in {sorted(exact)}", exact_texts=exact)

    def regex(self, pattern: str | re.Pattern[str], flags: int = 0) -> Filter:
        """``re.search`` finds ``pattern`` in the text (refused now if it does not compile)."""
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern, flags)
            except re.error as exc:
                raise InvalidRequestError(f"F.regex({pattern!r}): {exc}") from None
        else:
            compiled = pattern
        search = compiled.search
        return Filter(
            lambda m: m.text is not None and search(m.text) is not None,
            f"regex {compiled.pattern!r}",
        )

    def command(self, *words: str) -> Filter:
        """The first word is one of ``words``, any case, with or without a leading ``/``
        (``F.command("start")`` matches ``start``, ``/start``, ``START now``)."""
        names = frozenset(w.strip().lstrip("/").casefold() for w in _strings("F.command", words))
        if any(not n or any(c.isspace() for c in n) for n in names):
            raise InvalidRequestError(f"F.command takes single words, got {words!r}")

        def test(m: Message) -> bool:
            text = m.text
            if not text:
                return False
            first = text.split(None, 1)
            return bool(first) and first[0].lstrip("/").casefold() in names

        return Filter(test, f"command in {sorted(names)}")

    def sender(self, *numbers: str) -> Filter:
        """The sender's number is one of ``numbers`` (normalised as sends are)."""
        digits = frozenset(check.number("F.sender", n) for n in numbers)
        if not digits:
            raise InvalidRequestError("F.sender needs at least one number")
        return Filter(lambda m: m.sender in digits, f"sender in {sorted(digits)}")

    def instance(self, *names: str) -> Filter:
        """It arrived on one of these instances (API names)."""
        api_names = frozenset(check.api_name("F.instance", n) for n in names)
        if not api_names:
            raise InvalidRequestError("F.instance needs at least one API name")
        return Filter(lambda m: m.instance in api_names, f"instance in {sorted(api_names)}")

    def kind(self, *kinds: MessageKind | str) -> Filter:
        """The message is of one of these kinds (``text``, ``media``, ``location``,
        ``list_reply``, ``button_reply``, ``other``)."""
        wanted = frozenset(check.choice("F.kind", k, MessageKind) for k in kinds)
        if not wanted:
            raise InvalidRequestError("F.kind needs at least one kind")
        return Filter(lambda m: m.kind in wanted, f"kind in {sorted(wanted)}")

    def list_reply(self, *row_ids: str) -> Filter:
        """The customer chose a list row; with ``row_ids``, one of those."""
        return self._selected(MessageKind.LIST_REPLY, row_ids)

    def button_reply(self, *button_ids: str) -> Filter:
        """The customer pressed a button; with ``button_ids``, one of those."""
        return self._selected(MessageKind.BUTTON_REPLY, button_ids)

    def selected(self, *ids: str) -> Filter:
        """The customer chose a list row or pressed a button with one of these ids."""
        chosen = frozenset(_strings("F.selected", ids))
        return Filter(lambda m: m.selected_id in chosen, f"selected in {sorted(chosen)}")

    @staticmethod
    def _selected(kind: MessageKind, ids: tuple[str, ...]) -> Filter:
        if not ids:
            return Filter(lambda m: m.kind is kind, f"kind {kind.value}")
        chosen = frozenset(_strings(f"F.{kind.value}", ids))
        return Filter(
            lambda m: m.kind is kind and m.selected_id in chosen,
            f"{kind.value} in {sorted(chosen)}",
        )

    def state(self, *names: str | None) -> Filter:
        """The chat's conversation is in one of these states (None: in none)."""
        if not names:
            raise InvalidRequestError("F.state needs at least one state name (or None)")
        wanted = frozenset(None if n is None else check.text("F.state", n) for n in names)
        return Filter(
            lambda m: m.conversation.state in wanted,
            f"state in {sorted(map(str, wanted))}",
            states=frozenset(n for n in wanted if n is not None),
        )

    @property
    def private(self) -> Filter:
        """A one-to-one chat."""
        return Filter(lambda m: not m.event.is_group, "private")

    @property
    def group(self) -> Filter:
        """A group chat."""
        return Filter(lambda m: m.event.is_group, "group")

    @property
    def from_me(self) -> Filter:
        """Sent from the instance's own phone (such messages are skipped unless a handler's
        filter mentions ``F.from_me``)."""
        return Filter(lambda m: bool(m.event.from_me), "from_me", wants_from_me=True)

    @property
    def any(self) -> Filter:
        """Every message."""
        return Filter(lambda m: True, "any")


#: The filter constructors: ``F.text(...)``, ``F.regex(...)``, ``F.state(...)``, ...
F = _Filters()
