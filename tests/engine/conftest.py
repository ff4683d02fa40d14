"""A loopback HTTP server the download tests start themselves (no test touches the real network).

Each path is a ``Route`` that says how to misbehave: serve wrong bytes, drop the connection half-way,
stall longer than the client's timeout, redirect, ignore Range, or send more than announced. The server
records every request (path and Range header) so tests can count retries and check resumes.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Route:
    body: bytes = b""
    mode: str = "ok"  # ok | wrong | truncate | stall | redirect | oversize | no_range | slow | status
    truncate_first: int = 0  # for mode "truncate": how many requests are cut short (-1 = all)
    target: str = ""  # for mode "redirect"
    status: int = 200  # for mode "status"


class LoopbackServer:
    """Routes + request log over a ThreadingHTTPServer on 127.0.0.1:<ephemeral>."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.release = threading.Event()  # ends stalls at teardown
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, body: bytes = b"", **behaviour: object) -> str:
        """Serve ``body`` at ``path`` with the given Route behaviour; return the full URL."""
        self.routes[path] = Route(body, **behaviour)  # type: ignore[arg-type]
        return self.url(path)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def log(self, path: str, range_header: str | None) -> int:
        with self._lock:
            self.requests.append((path, range_header))
            return self.count(path)


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            return

        def do_GET(self) -> None:
            n = server.log(self.path, self.headers.get("Range"))
            route = server.routes.get(self.path)
            if route is None:
                self._plain(404, b"not found")
            elif route.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", route.target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif route.mode == "status":
                self._plain(route.status, b"error")
            else:
                self._serve(route, n)

        def _plain(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, route: Route, n: int) -> None:
            body = bytes(b ^ 0xFF for b in route.body) if route.mode == "wrong" else route.body
            start = self._range_start() if route.mode != "no_range" else None
            payload = body[start:] if start is not None else body
            self.send_response(206 if start is not None else 200)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if route.mode == "oversize":
                payload += b"x" * 4096  # no Content-Length: the client must notice by counting
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if route.mode == "truncate" and (route.truncate_first < 0 or n <= route.truncate_first):
                self._send(payload[: len(payload) // 2])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif route.mode == "stall":
                self._send(payload[:10])
                server.release.wait(10)
            elif route.mode == "slow":
                for i in range(0, len(payload), 1024):
                    self._send(payload[i:i + 1024])
                    time.sleep(0.01)
            else:
                self._send(payload)
            if route.mode == "oversize":
                self.close_connection = True

        def _send(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            server.bytes_sent += len(data)

        def _range_start(self) -> int | None:
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
            return int(match.group(1)) if match else None

    return Handler


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a port nobody listens on: bind, read the port, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.bin"


@pytest.fixture
def payload() -> bytes:
    """100 KiB of deterministic, non-repeating-looking bytes (several read chunks)."""
    return b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(3200))


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> Path:
    """A private cache dir and no inherited APN_* settings."""
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("APN_OFFLINE", raising=False)
    monkeypatch.delenv("APN_DEVICE", raising=False)
    return tmp_path / "cache"
