"""Safe HTTP(S) fetching of untrusted URLs: scheme and address checks on every hop, bounded bodies.

`fetch(url, cfg)` returns a `Fetched` or raises `Rejected` with the reason code. What it enforces:
- only http and https; URL credentials (user:pass@) are never sent and never written anywhere;
- every hop (the first request and each redirect) resolves the host once and refuses loopback,
  private, link-local, cloud-metadata and other special addresses unless the config allows them;
  the connection then goes to exactly that checked address (no second DNS lookup to rebind);
- at most `max_redirects` redirects, loops detected;
- connect and read timeouts plus a whole-request deadline (a server that drips bytes slowly);
- a body limit checked on Content-Length and while streaming; truncated transfers detected;
- Content-Type and magic-byte checks; `X-Robots-Tag: noai` / `noimageai` honoured;
- retries with exponential backoff on transient failures (429, 5xx, resets), honouring Retry-After.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError, SSLError,
)  # fmt: skip

from pipelines.dataset.config import DownloadConfig
from pipelines.dataset.outcomes import Reason, Rejected

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024
# Metadata endpoints outside the link-local range, refused whatever the config allows.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))
CGNAT = ipaddress.ip_network("100.64.0.0/10")
IMAGE_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (  # (magic, offset, format)
    (b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"GIF87a", 0, "gif"), (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"), (b"BM", 0, "bmp"), (b"II*\x00", 0, "tiff"), (b"MM\x00*", 0, "tiff"),
)  # fmt: skip


@dataclass(frozen=True)
class Fetched:
    body: bytes
    final_url: str  # after redirects, credentials removed
    content_type: str | None
    redirects: int
    attempts: int
    elapsed_s: float

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def image_format(data: bytes) -> str | None:
    """The image format named by the first bytes, or None when they are no image signature."""
    for magic, offset, fmt in IMAGE_SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (fmt != "webp" or data[:4] == b"RIFF"):
            return fmt
    return None


def redact_url(url: str) -> str:
    """The URL without user:password@ (what may be logged and written to outputs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@")[-1] if "@" in url else url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_scheme(url: str) -> SplitResult:
    """Parse `url`; only http(s) with a host passes (BAD_SCHEME / BAD_URL otherwise)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as err:
        raise Rejected(Reason.BAD_URL, str(err)) from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise Rejected(Reason.BAD_SCHEME, f"scheme {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise Rejected(Reason.BAD_URL, "no host")
    return parts


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, cfg: DownloadConfig) -> str | None:
    """Why `ip` may not be contacted under `cfg`, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_refusal(ip.ipv4_mapped, cfg)
        if ip.sixtofour is not None:
            return address_refusal(ip.sixtofour, cfg)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_link_local:
        return "link-local address (cloud metadata range)"
    if ip.is_loopback:
        return None if cfg.allow_loopback else "loopback address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "unspecified, multicast or reserved address"
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT):
        return None if cfg.allow_private else "private address"
    if not ip.is_global:
        return "non-global address"
    return None


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_address(host: str, port: int, cfg: DownloadConfig, resolver: Resolver = system_resolver) -> str:
    """Resolve `host` once; every address must be allowed (else BLOCKED_ADDRESS); returns the first."""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = resolver(host, port)
        except (socket.gaierror, UnicodeError, OSError) as err:
            raise Rejected(Reason.DNS_ERROR, f"{host}: {err}") from None
    if not addresses:
        raise Rejected(Reason.DNS_ERROR, f"{host}: no address")
    for address in addresses:
        why = address_refusal(ipaddress.ip_address(address.split("%")[0]), cfg)
        if why:
            raise Rejected(Reason.BLOCKED_ADDRESS, f"{host} -> {address}: {why}")
    return addresses[0]


def robots_refusal(values: list[str]) -> str | None:
    """The X-Robots-Tag directive that forbids AI use ('noai', 'noimageai'), if any.

    A directive may name a bot first ('somebot: noai'); we honour it whoever it names."""
    for value in values:
        for directive in value.lower().replace(";", ",").split(","):
            token = directive.split(":")[-1].strip()
            if token in ("noai", "noimageai"):
                return directive.strip()
    return None


class _Transient(Exception):
    """A failure worth another attempt; `reason` is what it becomes when attempts run out."""

    def __init__(self, reason: Reason, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after_s = reason, detail, retry_after_s


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def fetch(url: str, cfg: DownloadConfig, resolver: Resolver = system_resolver,
          sleep: Callable[[float], None] = time.sleep) -> Fetched:  # fmt: skip
    """Download one URL under every rule of the module docstring."""
    check_scheme(url)
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            fetched = _fetch_once(url, cfg, resolver, start)
            return Fetched(fetched.body, fetched.final_url, fetched.content_type, fetched.redirects,
                           attempt + 1, time.monotonic() - start)  # fmt: skip
        except _Transient as err:
            if attempt >= cfg.retries:
                raise Rejected(err.reason, err.detail) from None
            delay = min(cfg.backoff_max_s, cfg.backoff_s * 2**attempt)
            if err.retry_after_s is not None:
                delay = min(cfg.backoff_max_s, max(delay, err.retry_after_s))
            sleep(delay * (1 + 0.1 * random.random()))
            attempt += 1


def _pool(parts: SplitResult, address: str, cfg: DownloadConfig) -> urllib3.HTTPConnectionPool:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = urllib3.Timeout(connect=cfg.connect_timeout_s, read=cfg.timeout_s)
    if parts.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1, server_hostname=parts.hostname,
            assert_hostname=parts.hostname, ssl_context=ssl.create_default_context(),
        )  # fmt: skip
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def _fetch_once(url: str, cfg: DownloadConfig, resolver: Resolver, start: float) -> Fetched:
    seen: set[str] = set()
    current = url
    for hop in range(cfg.max_redirects + 2):
        parts = check_scheme(current)
        clean = redact_url(current)
        if clean in seen:
            raise Rejected(Reason.TOO_MANY_REDIRECTS, f"redirect loop at {clean}")
        seen.add(clean)
        if hop > cfg.max_redirects:
            raise Rejected(Reason.TOO_MANY_REDIRECTS, f"more than {cfg.max_redirects} redirects")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = checked_address(parts.hostname or "", port, cfg, resolver)
        host = parts.hostname or ""
        host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": host_header, "User-Agent": cfg.user_agent, "Accept": "image/*;q=1.0, */*;q=0.1",
                   "Accept-Encoding": "identity"}  # fmt: skip
        pool = _pool(parts, address, cfg)
        try:
            response = pool.urlopen("GET", target, headers=headers, redirect=False, retries=False,
                                    preload_content=False, assert_same_host=False)  # fmt: skip
        except (ConnectTimeoutError, ReadTimeoutError) as err:
            if cfg.retry_timeouts:
                raise _Transient(Reason.TIMEOUT, f"{clean}: {err.__class__.__name__}") from None
            raise Rejected(Reason.TIMEOUT, f"{clean}: no answer within the timeout") from None
        except SSLError as err:
            raise Rejected(Reason.CONNECTION_ERROR, f"{clean}: TLS error {err}") from None
        except (NewConnectionError, ProtocolError, HTTPError, OSError) as err:
            if "timed out" in str(err).lower():
                raise Rejected(Reason.TIMEOUT, f"{clean}: no answer within the timeout") from None
            raise _Transient(Reason.CONNECTION_ERROR, f"{clean}: {err.__class__.__name__}") from None
        try:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise Rejected(Reason.HTTP_ERROR, f"{clean}: redirect {response.status} without Location")
                current = urljoin(current, location.strip())
                continue
            return _read_body(response, clean, cfg, start, hop)
        finally:
            response.release_conn()
            pool.close()
    raise Rejected(Reason.TOO_MANY_REDIRECTS, f"more than {cfg.max_redirects} redirects")  # unreachable


def _read_body(response: urllib3.BaseHTTPResponse, clean: str, cfg: DownloadConfig, start: float,
               redirects: int) -> Fetched:  # fmt: skip
    status = response.status
    if status != 200:
        detail = f"{clean}: status {status}"
        if status in cfg.retry_statuses:
            reason = Reason.HTTP_500 if status == 500 else Reason.HTTP_ERROR
            raise _Transient(reason, detail, _retry_after(response.headers.get("Retry-After")))
        raise Rejected(Reason.HTTP_404 if status == 404 else Reason.HTTP_500 if status == 500 else Reason.HTTP_ERROR,
                       detail)  # fmt: skip
    if cfg.respect_robots_tag:
        directive = robots_refusal(response.headers.getlist("X-Robots-Tag"))
        if directive:
            raise Rejected(Reason.ROBOTS_NOAI, f"{clean}: X-Robots-Tag {directive}")
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None
    if content_type and not content_type.startswith(tuple(cfg.content_types)):
        raise Rejected(Reason.NOT_IMAGE_CONTENT_TYPE, f"{clean}: Content-Type {content_type}")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
        raise Rejected(Reason.TOO_LARGE, f"{clean}: Content-Length {declared} > {cfg.max_body_bytes}")
    chunks, size = [], 0
    try:
        for chunk in response.stream(CHUNK):
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise Rejected(Reason.TOO_LARGE, f"{clean}: body over {cfg.max_body_bytes} bytes")
            if time.monotonic() - start > cfg.timeout_s * 3:
                raise Rejected(Reason.TIMEOUT, f"{clean}: body not complete within {cfg.timeout_s * 3:.0f} s")
            chunks.append(chunk)
    except ReadTimeoutError:
        raise Rejected(Reason.TIMEOUT, f"{clean}: body stalled past the timeout") from None
    except ProtocolError as err:
        if "IncompleteRead" in repr(err) or "incomplete" in str(err).lower():
            raise Rejected(Reason.TRUNCATED, f"{clean}: connection closed before Content-Length bytes") from None
        raise _Transient(Reason.CONNECTION_ERROR, f"{clean}: {err.__class__.__name__} while reading") from None
    body = b"".join(chunks)
    if declared and declared.isdigit() and len(body) < int(declared):
        raise Rejected(Reason.TRUNCATED, f"{clean}: {len(body)} of {declared} bytes")
    if image_format(body) is None:
        raise Rejected(Reason.NOT_IMAGE_BYTES, f"{clean}: {len(body)} bytes without an image signature")
    return Fetched(body, clean, content_type, redirects, 1, time.monotonic() - start)
