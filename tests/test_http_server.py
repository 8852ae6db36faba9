"""The misbehaving web server: each fault is observed by a real HTTP client over a socket."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest
import requests

from gadms.testing.http_server import Behaviour, MisbehavingHTTPServer, write_manifest

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def served(http_root: Path, http_server: MisbehavingHTTPServer) -> MisbehavingHTTPServer:
    (http_root / "img").mkdir()
    (http_root / "img" / "a.png").write_bytes(PNG)
    (http_root / "img" / "b.png").write_bytes(PNG[::-1])
    return http_server


def test_serves_files_with_type_and_length(served: MisbehavingHTTPServer):
    response = requests.get(served.url("img/a.png"), timeout=5)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert int(response.headers["Content-Length"]) == len(PNG)
    assert served.base_url.startswith("http://127.0.0.1:")
    assert served.request_count("img/a.png") == 1


@pytest.mark.parametrize("status", [404, 500, 503])
def test_error_statuses(served: MisbehavingHTTPServer, status: int):
    served.set_behaviour("/img/a.png", Behaviour(status=status))
    assert requests.get(served.url("img/a.png"), timeout=5).status_code == status


def test_missing_file_and_path_traversal_are_404(served: MisbehavingHTTPServer, http_root: Path):
    (http_root.parent / "secret.txt").write_text("outside the served folder")
    assert requests.get(served.url("nothing.png"), timeout=5).status_code == 404
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 404"), reply[:40]


def test_slow_response_trips_the_client_timeout(served: MisbehavingHTTPServer):
    served.set_behaviour("/img/a.png", Behaviour(delay_s=3.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(served.url("img/a.png"), timeout=(2, 0.5))
    # Other paths are not slowed down by a sleeping handler (the server is threaded).
    assert requests.get(served.url("img/b.png"), timeout=2).content == PNG[::-1]


def test_wrong_content_type(served: MisbehavingHTTPServer):
    served.set_behaviour("/img/a.png", Behaviour(content_type="text/html"))
    response = requests.get(served.url("img/a.png"), timeout=5)
    assert response.headers["Content-Type"] == "text/html"
    assert response.content == PNG


def test_truncated_body_is_short_of_its_announced_length(served: MisbehavingHTTPServer):
    served.set_behaviour("/img/a.png", Behaviour(truncate_at=100))
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    connection.request("GET", "/img/a.png")
    response = connection.getresponse()
    assert int(response.getheader("Content-Length")) == len(PNG)
    with pytest.raises(http.client.IncompleteRead) as err:
        response.read()
    assert len(err.value.partial) == 100
    connection.close()


def test_redirects_and_redirect_loop(served: MisbehavingHTTPServer):
    served.set_behaviour("/moved.png", Behaviour(redirect_to="/img/b.png"))
    response = requests.get(served.url("moved.png"), timeout=5)
    assert [r.status_code for r in response.history] == [302]
    assert response.content == PNG[::-1]

    served.set_behaviour("/loop.png", Behaviour(redirect_loop=True))
    session = requests.Session()
    session.max_redirects = 5
    with pytest.raises(requests.exceptions.TooManyRedirects):
        session.get(served.url("loop.png"), timeout=5)
    assert served.request_count("loop.png") == 6  # the first request and five redirected hops


def test_extra_headers_and_inline_body(served: MisbehavingHTTPServer):
    served.set_behaviour(
        "/page.jpg", Behaviour(body="<html>not an image</html>", content_type="image/jpeg",
                               headers={"X-Robots-Tag": "noai"})
    )
    response = requests.get(served.url("page.jpg"), timeout=5)
    assert response.headers["X-Robots-Tag"] == "noai"
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.content == b"<html>not an image</html>"


def test_manifest_in_the_folder_configures_paths_and_explicit_behaviour_wins(
    served: MisbehavingHTTPServer, http_root: Path
):
    write_manifest(http_root, {"/img/a.png": Behaviour(status=404), "/img/b.png": Behaviour(status=500)})
    assert requests.get(served.url("img/a.png"), timeout=5).status_code == 404
    served.set_behaviour("/img/b.png", Behaviour())
    assert requests.get(served.url("img/b.png"), timeout=5).status_code == 200


def test_close_releases_the_port_and_sleeping_handlers(http_root: Path):
    server = MisbehavingHTTPServer(http_root, {"/slow": Behaviour(delay_s=60)})
    port = server.port
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.url("slow"), timeout=(2, 0.3))
    server.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
