"""A deadline for request heads: the server closes a connection that has not delivered a complete request
head within `header_timeout` seconds of opening or of its previous response.

uvicorn times out idle keep-alive connections only until their first byte arrives; a client that opens
connections and sends nothing, or half a head, would hold them forever. Bodies have their own deadline
in the app (`serving.app.BodyLimit`, 408), and idle keep-alive connections keep uvicorn's.

Both of uvicorn's HTTP/1.1 parsers get the deadline: httptools (C; the default when installed, 1.4x h11's
requests per second at concurrency 32 in benchmarks/serving.py) and h11 (pure Python).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

PARSERS = ("auto", "httptools", "h11")


class _HeadDeadline:
    """The timer both protocols share: armed when a connection opens or a response ends, disarmed by a
    complete request head, and closing the connection when it fires."""

    header_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class HeadTimeoutH11Protocol(_HeadDeadline, H11Protocol):
    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a complete request head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before super(): it may start a pipelined request at once, which disarms again
        super().on_response_complete()


def _httptools_protocol() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeadTimeoutHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)  # a request whose head is already in: super() starts it
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._arm()

    return HeadTimeoutHttpToolsProtocol


def resolve_parser(parser: str) -> str:
    """`auto`: httptools when it is installed, else h11."""
    if parser not in PARSERS:
        raise ValueError(f"http parser must be one of {', '.join(PARSERS)}; got {parser!r}")
    if parser != "auto":
        return parser
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def with_header_timeout(seconds: float, parser: str = "auto") -> type:
    """The protocol class to pass as uvicorn's `http=`."""
    base = _httptools_protocol() if resolve_parser(parser) == "httptools" else HeadTimeoutH11Protocol
    return type(base.__name__, (base,), {"header_timeout": seconds})
