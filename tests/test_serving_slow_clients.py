"""Slow clients cannot hold the server: connections that send nothing, half a request head, half a body
or sit idle after a response are closed after their timeout, while other clients are served throughout."""

import socket
import threading
import time

import httpx
import pytest

from helpers import serve

TIMEOUT = 1.0


def _open(url: str, data: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    if data:
        s.sendall(data)
    return s


def _closed_after(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (reading whatever it sent), or `limit`."""
    start, got = time.monotonic(), b""
    s.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - start, got


@pytest.mark.slow
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_slow_connections_are_closed_while_others_are_served(exported, parser):
    proc, url = serve(
        [
            "--model-uri",
            str(exported[0]),
            "--http",
            parser,
            "--header-timeout",
            str(TIMEOUT),
            "--body-timeout",
            str(TIMEOUT),
            "--keep-alive-timeout",
            "1",
        ]
    )
    head = b"POST /v1/nli HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n"
    served, stop = [], threading.Event()

    def others():
        with httpx.Client(base_url=url) as c:
            while not stop.is_set():
                r = c.post("/v1/nli", json={"premise": "a .", "hypothesis": "b ."})
                served.append(r.status_code)

    try:
        slow = {
            "silent": [_open(url, b"") for _ in range(20)],
            "half head": [_open(url, head) for _ in range(10)],
            "half body": [_open(url, head + b"content-length: 100\r\n\r\n" + b'{"premise": ') for _ in range(10)],
        }
        idle = _open(url, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        thread = threading.Thread(target=others)
        thread.start()
        results = {kind: [_closed_after(s, 4 * TIMEOUT + 3) for s in socks] for kind, socks in slow.items()}
        idle_closed, idle_got = _closed_after(idle, 4 * TIMEOUT + 3)
        stop.set()
        thread.join(timeout=30)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=30)
    for kind, outcomes in results.items():
        for seconds, got in outcomes:
            assert seconds < 4 * TIMEOUT + 2, (kind, seconds)  # closed by the server, not by this test
        if kind == "half body":
            assert all(b" 408 " in got.split(b"\r\n")[0] and b'"field":"body"' in got for _, got in outcomes)
    assert b"200 OK" in idle_got and idle_closed < 4 * TIMEOUT + 2
    assert len(served) > 10 and set(served) == {200}
