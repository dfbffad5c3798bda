"""A local webhook receiver for tests: a real HTTP server on loopback (a thread of the test process) that records
every POST and answers as scripted per path: a status, a delay, headers. It can go down and come back up on the
same port, as a receiver being redeployed does."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from testkit.ports import free_port


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0  # before answering (a slow receiver)
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"


class Receiver:
    """`url(path)` to configure a webhook; `script(path, *replies)` answers the next requests of a path in turn
    (then 200); `received(path)` is what arrived, in order, including the requests answered with an error."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._scripts: dict[str, list[Reply]] = defaultdict(list)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def ids(self, path: str | None = None) -> list[str]:
        return [str(r.body.get("id")) for r in self.received(path)]

    @property
    def up(self) -> bool:
        return self._server is not None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with receiver._lock:
                    receiver._received.append(Received(self.path, body, dict(self.headers), time.monotonic()))
                    script = receiver._scripts.get(self.path)
                    reply = script.pop(0) if script else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (its timeout): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until `start` again."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
