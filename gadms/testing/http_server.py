"""A real HTTP server on 127.0.0.1 that serves a folder and misbehaves on request, per path.

Used by the tests and the offline demo to stand in for "the web": the dataset pipeline downloads
from it exactly as it would from the internet. Each path can be given a `Behaviour` (a status
code, a delay, a wrong content type, a truncated body, a redirect or a redirect loop, extra
headers); a folder may also carry a `behaviours.json` manifest mapping URL paths to behaviours, so
a generated web corpus brings its own misbehaviour. Every request is recorded in `requests`.

    with MisbehavingHTTPServer(folder) as server:
        server.set_behaviour("/a.jpg", Behaviour(status=404))
        requests.get(server.url("/a.jpg"))
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MANIFEST_NAME = "behaviours.json"


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one path. The default is a plain 200 with the file and its type."""

    status: int = 200
    delay_s: float = 0.0  # wait before sending anything (a slow server, past a client's timeout)
    content_type: str | None = None  # None: guessed from the file name
    truncate_at: int | None = None  # announce the full length, send this many bytes, then close
    redirect_to: str | None = None  # a path on this server or an absolute URL; status 302
    redirect_loop: bool = False  # the path redirects to itself, forever
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # serve this text instead of a file (an error page, HTML)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behaviour:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        defaults = asdict(Behaviour())
        return {k: v for k, v in asdict(self).items() if v != defaults[k]}


def write_manifest(folder: str | Path, behaviours: dict[str, Behaviour]) -> Path:
    """Store per-path behaviours next to the files they apply to (read by the server at start)."""
    path = Path(folder) / MANIFEST_NAME
    path.write_text(json.dumps({p: b.to_dict() for p, b in sorted(behaviours.items())}, indent=1))
    return path


def read_manifest(folder: str | Path) -> dict[str, Behaviour]:
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return {}
    return {p: Behaviour.from_dict(b) for p, b in json.loads(path.read_text()).items()}


class MisbehavingHTTPServer:
    """Serves `root` on a free loopback port from a background thread until `close()`."""

    def __init__(self, root: str | Path, behaviours: dict[str, Behaviour] | None = None) -> None:
        self.root = Path(root).resolve()
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self._manifest: dict[str, Behaviour] = {}
        self._manifest_mtime: float | None = None
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http-fixture", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def set_behaviour(self, path: str, behaviour: Behaviour) -> None:
        with self._lock:
            self.behaviours["/" + path.lstrip("/")] = behaviour

    def behaviour(self, path: str) -> Behaviour:
        """What `path` does now: set_behaviour() wins over the folder's manifest, else a plain 200."""
        manifest = self.root / MANIFEST_NAME
        mtime = manifest.stat().st_mtime if manifest.exists() else None
        with self._lock:
            if mtime != self._manifest_mtime:  # (re)read when the folder's manifest changes
                self._manifest, self._manifest_mtime = read_manifest(self.root), mtime
            return self.behaviours.get(path) or self._manifest.get(path) or Behaviour()

    def request_count(self, path: str) -> int:
        with self._lock:
            return self.requests["/" + path.lstrip("/")]

    def close(self) -> None:
        self._closing.set()  # wakes handlers that are sleeping through a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with server._lock:
                    server.requests[path] += 1
                behaviour = server.behaviour(path)
                if behaviour.delay_s and server._closing.wait(behaviour.delay_s):
                    return
                if behaviour.redirect_loop or behaviour.redirect_to:
                    self._redirect(path, behaviour)
                    return
                if behaviour.status >= 400 and behaviour.body is None:
                    self._send(behaviour.status, b"error\n", "text/plain", behaviour, send_body)
                    return
                body = self._body(path, behaviour)
                if body is None:
                    self._send(404, b"not found\n", "text/plain", behaviour, send_body)
                    return
                content_type = behaviour.content_type or mimetypes.guess_type(path)[0]
                self._send(behaviour.status, body, content_type or "application/octet-stream", behaviour, send_body)

            def _body(self, path: str, behaviour: Behaviour) -> bytes | None:
                if behaviour.body is not None:
                    return behaviour.body.encode()
                file = (server.root / path.lstrip("/")).resolve()
                if not file.is_relative_to(server.root) or not file.is_file():
                    return None
                return file.read_bytes()

            def _redirect(self, path: str, behaviour: Behaviour) -> None:
                # A loop redirects a path to itself: a client must notice or hit its redirect limit.
                location = path if behaviour.redirect_loop else (behaviour.redirect_to or "/")
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                for name, value in behaviour.headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def _send(
                self, status: int, body: bytes, content_type: str, behaviour: Behaviour, send_body: bool
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in behaviour.headers.items():
                    self.send_header(name, value)
                if behaviour.truncate_at is not None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if not send_body:
                    return
                if behaviour.truncate_at is not None:
                    body = body[: behaviour.truncate_at]
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up; fine
                    pass

        return Handler
