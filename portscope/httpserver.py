"""A web-config file in the Prometheus exporter-toolkit's shape, and the HTTP(S) server using it.

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the config file
      key_file: server.key
      client_ca_file: ca.crt         # optional: with client_auth_type RequireAndVerifyClientCert
      client_auth_type: NoClientCert
      min_version: TLS12             # TLS12 (default) or TLS13
    basic_auth_users:
      alice: $2b$12$...              # bcrypt hash (htpasswd -B, or python -m bcrypt)

Unknown keys are an error, as in the toolkit: a typo must not silently turn TLS off.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import BadInput, NotPermitted
from .ports import parse_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

log = logging.getLogger("portscope.exporter")

_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
_AUTH_TYPES = ("NoClientCert", "RequireAndVerifyClientCert")
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
MAX_CONFIG_BYTES = 1 << 20   # a web config is a few lines; this is not one
CONN_TIMEOUT = 10.0          # seconds a client may take to send its request (no slowloris)
WORKER_IDLE = 60.0           # seconds an idle connection thread waits for the next connection

_request = threading.local()     # .arrived of the request this thread is serving


def waiting_response() -> "Callable[[int, str, bytes], None] | None":
    """For a route about to wait for bytes another thread makes (Exporter.render): a function
    that thread may call to write this request's whole response itself, at once and without
    blocking, before it wakes the waiting threads. Under 50 scrapers the woken threads each
    waited for the interpreter lock, behind the next collection, to write theirs. The
    request's own thread then writes only what did not fit in the socket's buffer. None
    outside a request, for HEAD and HTTP/0.9, and on TLS (an SSL connection is not written
    from two threads)."""
    h = getattr(_request, "handler", None)
    return h.deliver if h is not None else None


def arrival() -> float | None:
    """time.monotonic() when the request this thread serves arrived; None outside a request.
    Under load a request may need a while to be accepted and parsed (the accepting thread
    and this one wait for the interpreter lock behind a collection); a route can tell from
    this what happened meanwhile (Exporter.render serves a collection that ended since)."""
    return getattr(_request, "arrived", None)


_TCP_INFO_LAST_DATA_RECV = 52     # offset of tcpi_last_data_recv (ms) in struct tcp_info


def received(conn: socket.socket) -> float | None:
    """time.monotonic() when the kernel last received data on this TCP connection (Linux
    TCP_INFO's tcpi_last_data_recv, in milliseconds at jiffy resolution): right after a
    request was read, when its bytes arrived, however long the process took to get to them.
    None where TCP_INFO is not available."""
    try:
        info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (AttributeError, OSError):
        return None
    if len(info) < _TCP_INFO_LAST_DATA_RECV + 4:
        return None
    ms = int.from_bytes(info[_TCP_INFO_LAST_DATA_RECV:_TCP_INFO_LAST_DATA_RECV + 4], sys.byteorder)
    return time.monotonic() - ms / 1000


@dataclass(frozen=True)
class WebConfig:
    """A Prometheus exporter-toolkit web config: TLS files and basic-auth users."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    users: dict = field(default_factory=dict)        # user -> bcrypt hash (bytes)
    source: str | None = field(default=None, compare=False)   # the file, for error lines

    @property
    def tls(self) -> bool:
        """True when a certificate is configured (serve HTTPS)."""
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None without TLS; every problem is one BadInput line
        naming the file it is about."""
        if not self.tls:
            return None
        where = f"web config {self.source}" if self.source else "web config"
        cert, key, ca = self.cert_file, self.key_file, self.client_ca_file
        if cert is None:
            raise BadInput(f"{where}: tls_server_config needs cert_file")
        for what, p in (("cert_file", cert), ("key_file", key), ("client_ca_file", ca)):
            if p is not None:
                try:
                    with open(p, "rb"):
                        pass
                except OSError as e:
                    raise BadInput(f"{where}: cannot read {what} {p}: {e.strerror or e}")
        if not _holds_certificates(cert):
            raise BadInput(f"{where}: cert_file {cert} holds no PEM certificate")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _VERSIONS[self.min_version]
        try:
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        except _Encrypted:
            raise BadInput(f"{where}: key_file {key} is encrypted; a passphrase cannot be given, "
                           "so use an unencrypted key (openssl pkey -in KEY -out KEY.plain)")
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise BadInput(f"{where}: key_file {key} is not the private key of cert_file {cert}")
            why = f" ({e.reason})" if e.reason else ""
            raise BadInput(f"{where}: key_file {key} holds no usable PEM private key{why}")
        except OSError as e:
            raise BadInput(f"{where}: cannot load cert_file {cert} with key_file {key}: {e.strerror or e}")
        if ca:
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                reason = getattr(e, "reason", None)
                raise BadInput(f"{where}: client_ca_file {ca} holds no usable PEM certificate"
                               + (f" ({reason})" if reason else ""))
        if self.client_auth_type == "RequireAndVerifyClientCert":
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class _Encrypted(Exception):
    pass


def _no_passphrase():
    # called by OpenSSL only for an encrypted key; without it OpenSSL would prompt on the tty
    raise _Encrypted()


def _holds_certificates(path: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError):
        return False
    return True


def _read_text(path: str) -> str:
    """The file as UTF-8 text (a UTF-8 BOM is allowed); anything else is one BadInput line."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise BadInput(f"cannot read web config {path}: {e.strerror or e}")
    if len(raw) > MAX_CONFIG_BYTES:
        raise BadInput(f"web config {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]      # drop the BOM ourselves, so error offsets are offsets in `raw`
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise BadInput(f"web config {path} is not UTF-8 text: byte 0x{raw[e.start]:02x} "
                       f"at line {line}, column {col}")


def load(path: str) -> WebConfig:
    """Parse and check a web-config file; every problem is one BadInput line."""
    import yaml

    text = _read_text(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInput(f"web config {path} is not valid YAML: {str(e).splitlines()[0]}")
    doc = doc or {}
    if not isinstance(doc, dict):
        raise BadInput(f"web config {path}: expected a mapping at the top level")
    unknown = set(doc) - {"tls_server_config", "basic_auth_users"}
    if unknown:
        raise BadInput(f"web config {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                       "(expected tls_server_config, basic_auth_users)")
    base = os.path.dirname(os.path.abspath(path))

    def rel(p):
        return p if p is None else os.path.join(base, str(p))

    tls = doc.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise BadInput(f"web config {path}: tls_server_config must be a mapping")
    bad = set(tls) - _TLS_KEYS
    if bad:
        raise BadInput(f"web config {path}: unknown tls_server_config key(s) {', '.join(sorted(map(str, bad)))}")
    if tls and not (tls.get("cert_file") and tls.get("key_file")):
        raise BadInput(f"web config {path}: tls_server_config needs both cert_file and key_file")
    auth_type = tls.get("client_auth_type", "NoClientCert")
    if auth_type not in _AUTH_TYPES:
        raise BadInput(f"web config {path}: client_auth_type must be one of {', '.join(_AUTH_TYPES)}")
    if auth_type == "RequireAndVerifyClientCert" and not tls.get("client_ca_file"):
        raise BadInput(f"web config {path}: RequireAndVerifyClientCert needs client_ca_file")
    min_version = tls.get("min_version", "TLS12")
    if min_version not in _VERSIONS:
        raise BadInput(f"web config {path}: min_version must be TLS12 or TLS13")

    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise BadInput(f"web config {path}: basic_auth_users must be a mapping of user: bcrypt-hash")
    hashes = {}
    for user, h in users.items():
        problem = bcrypt_problem(h)
        if problem:
            raise BadInput(f"web config {path}: the password of user {user!r} is not a bcrypt "
                           f"hash: {problem}")
        hashes[str(user)] = str(h).encode()
    cfg = WebConfig(cert_file=rel(tls.get("cert_file")), key_file=rel(tls.get("key_file")),
                    client_ca_file=rel(tls.get("client_ca_file")), client_auth_type=auth_type,
                    min_version=min_version, users=hashes, source=path)
    cfg.ssl_context()           # fail at start, not at the first scrape
    return cfg


_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}", re.ASCII)


def bcrypt_problem(h: object) -> str | None:
    """Why `h` cannot be a bcrypt hash, or None. Checked in full at start-up: bcrypt.checkpw
    returns False, not an error, for a truncated hash, so a bad one would lock everyone out
    without a word. The library's own check runs at cost 4 (the salt and digest are the same
    bytes at any cost), so even a cost-31 hash is checked in a millisecond."""
    if not isinstance(h, str) or not h:
        return "empty" if not h else f"expected a string, got {type(h).__name__}"
    m = _BCRYPT.fullmatch(h)
    if not m:
        if not h.startswith(("$2a$", "$2b$", "$2y$")):
            return "it does not start with $2a$, $2b$ or $2y$ (make one with htpasswd -nbBC 10 USER PASS)"
        return (f"expected $2b$NN$ and 53 characters of bcrypt's alphabet (60 in all), got {len(h)} "
                "characters: is it cut short?")
    cost = int(m.group(1))
    if not 4 <= cost <= 31:
        return f"cost {cost} is outside bcrypt's 04..31"
    import bcrypt
    try:
        bcrypt.checkpw(b"", (h[:4] + "04" + h[6:]).encode())
    except ValueError as e:
        return f"bcrypt refuses it ({e})"
    return None


class Authenticator:
    """Basic auth against bcrypt hashes.

    Timing: an unknown user is checked against a dummy hash of the highest cost in the
    config, so answering "no" takes as long for a user that does not exist as for a wrong
    password (no guessing user names by timing).
    Cost under load: bcrypt costs ~0.1-0.3 s by design. As in Prometheus' exporter-toolkit,
    a verified (user, password, stored hash) is remembered by its SHA-256 in a bounded
    cache, so an authenticated scraper pays bcrypt once; concurrent requests with the same
    credentials share one verification instead of each paying for it. Wrong passwords are
    never cached and always pay the full cost."""

    CACHE_SIZE = 256

    def __init__(self, users: dict) -> None:
        self.users = users
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, list] = {}      # key -> [threading.Event, result]
        self._lock = threading.Lock()
        self._dummy: bytes | None = None
        if users:
            import bcrypt
            cost = max(int(h[4:6]) for h in users.values())
            self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=cost))

    def check(self, header: str | None) -> bool:
        """Does the Authorization header name a configured user and the right password?
        Always True without users (auth off)."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        stored = self.users.get(user)
        known = stored is not None
        # an unknown user pays for the dummy hash: no guessing user names by timing
        h: bytes = stored if stored is not None else (self._dummy or b"")
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), h))).digest()
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return known
            pending = self._pending.get(key)
            leader = pending is None
            slot: list = [threading.Event(), False] if pending is None else pending
            if leader:
                self._pending[key] = slot
        if not leader:
            slot[0].wait()
            return slot[1]
        ok = False
        try:
            import bcrypt
            try:
                ok = bcrypt.checkpw(password.encode(), h) and known
            except ValueError:
                ok = False
        finally:
            with self._lock:
                slot[1] = ok
                del self._pending[key]
                if ok:
                    self._ok[key] = None
                    while len(self._ok) > self.CACHE_SIZE:
                        self._ok.popitem(last=False)
            slot[0].set()
        return ok


_PLAIN_HTTP = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIO", b"DELET", b"PATCH")
_PLAIN_REPLY = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                b"Client sent an HTTP request to an HTTPS server.\n")


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with the TLS handshake in the connection's own thread (a slow or
    plain-HTTP client never blocks accept()) and a per-connection timeout."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_port = False      # never share a port with another exporter (some Pythons default to True)

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext | None,
                 family: int = socket.AF_INET) -> None:
        self.address_family = family
        self.ctx = ctx
        self._accepted: dict = {}        # connection -> time.monotonic() of its accept()
        self._pool_lock = threading.Lock()
        self._pool_cv = threading.Condition(self._pool_lock)
        self._work: deque = deque()      # connections handed to idle workers, not yet taken
        self._idle = 0                   # workers waiting, minus connections handed to them
        self._closing = False
        super().__init__(addr, handler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """Note when the connection was accepted (this runs in the accepting thread), then
        hand it to an idle worker thread, or to a new one when none is idle.

        Workers stay for WORKER_IDLE seconds after their last connection: under 50
        scrapers a thread per connection (ThreadingMixIn's way) spent a fifth of the
        server's interpreter time creating and starting threads, while a collection waited
        for the interpreter lock. Every connection still gets a thread at once (no queue
        behind slow clients), as before."""
        self._accepted[request] = time.monotonic()
        with self._pool_lock:
            if self._idle:
                self._idle -= 1
                self._work.append((request, client_address))
                self._pool_cv.notify()
                return
        threading.Thread(target=self._worker, args=(request, client_address), daemon=True,
                         name="portscope-http").start()

    def _worker(self, request: socket.socket, client_address: tuple) -> None:
        """Serve this connection, then wait for the next one (at most WORKER_IDLE s)."""
        while True:
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
            with self._pool_lock:
                self._idle += 1
                end = time.monotonic() + WORKER_IDLE
                while not self._work:
                    left = end - time.monotonic()
                    if left <= 0 or self._closing:
                        self._idle -= 1
                        return
                    self._pool_cv.wait(left)
                request, client_address = self._work.popleft()

    def server_close(self) -> None:
        """Close the listening socket and let idle workers end."""
        with self._pool_lock:
            self._closing = True
            self._pool_cv.notify_all()
        super().server_close()

    # a TCP server is only ever handed connected sockets, never socketserver's (data, socket) pairs
    def finish_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """Handle one connection in its thread: refuse plain HTTP on a TLS port, do the handshake
        here (not in accept()), then run the handler."""
        request.settimeout(CONN_TIMEOUT)
        _request.accepted = self._accepted.pop(request, None)
        conn = request
        if self.ctx is not None:
            try:
                head = request.recv(5, socket.MSG_PEEK)
                if head.startswith(_PLAIN_HTTP) or head in (b"GET", b"HEAD"):
                    # what Go's TLS servers (and so the exporter-toolkit) answer
                    request.sendall(_PLAIN_REPLY)
                    log.info("plain HTTP request from %s to the TLS port refused", client_address[0])
                    return
                conn = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
                return
        try:
            # typeshed types the handler's server argument as Self, which `self` here is
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            if conn is not request:
                try:
                    conn.close()
                except OSError:
                    pass

    def handle_error(self, request: object, client_address: tuple) -> None:
        """Log a failed connection at info level (traceback only with debug logging)."""
        # a client hanging up mid-response is not worth a traceback on stderr
        log.info("connection from %s ended with an error", client_address[0], exc_info=log.isEnabledFor(logging.DEBUG))


def make_handler(routes: dict, auth: Authenticator, *, access_log: bool = False) -> type[BaseHTTPRequestHandler]:
    """routes: path -> callable() -> (status, content_type, body bytes)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "portscope-exporter"
        # headers and body leave in one send() (handle_one_request flushes after each
        # request): unbuffered, they were two writes, and under load two wake-ups of the
        # scraper for every response
        wbufsize = 1 << 16
        _early: tuple[bytes, int] | None = None     # (response, bytes of it sent) by deliver()

        def _head(self, status: int, ctype: str, length: int, extra=()) -> bytes:
            """The status line and headers send_response() and send_header() would write
            (same order, same encoding), without logging."""
            lines = [f"{self.protocol_version} {status} {self.responses[status][0]}",
                     f"Server: {self.version_string()}", f"Date: {self.date_time_string()}",
                     f"Content-Type: {ctype}", f"Content-Length: {length}",
                     *(f"{k}: {v}" for k, v in extra), "", ""]
            return "\r\n".join(lines).encode("latin-1", "strict")

        def deliver(self, status, ctype, body):
            """waiting_response(): the whole response, sent from the calling thread with
            MSG_DONTWAIT; what the socket did not take is left to _reply()."""
            data = self._head(status, ctype, len(body)) + body
            try:
                sent = self.connection.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return                   # the client is gone: _reply() meets the same error
            self._early = (data, sent)

        def _reply(self, status, ctype, body, head=False, extra=()):
            early, self._early = self._early, None
            if early is not None:
                data, sent = early
                self.log_request(status)
                if sent < len(data):
                    self.wfile.write(data[sent:])
                return
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def parse_request(self):
            # when the request's bytes reached the kernel; without TCP_INFO, when the
            # connection was accepted (its first request) or now (the next ones)
            _request.arrived = received(self.connection) or getattr(_request, "accepted", None) or time.monotonic()
            _request.accepted = None
            return super().parse_request()

        def _serve(self, head=False):
            if not auth.check(self.headers.get("Authorization")):
                self._reply(401, "text/plain; charset=utf-8", b"Unauthorized\n", head,
                            (("WWW-Authenticate", 'Basic realm="portscope"'),))
                return
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self._reply(404, "text/plain; charset=utf-8", b"Not Found\n", head)
                return
            # a route that waits for another thread may have it write the response (GET,
            # plain TCP: waiting_response)
            _request.handler = self if not head and self.request_version != "HTTP/0.9" \
                and not isinstance(self.connection, ssl.SSLSocket) else None
            try:
                status, ctype, body = route()
            finally:
                _request.handler = None
            self._reply(status, ctype, body, head)

        def do_GET(self):
            self._serve()

        def do_HEAD(self):
            self._serve(head=True)

        def log_message(self, fmt, *args):
            if access_log:
                log.info("%s %s", self.address_string(), fmt % args)

    return Handler


def parse_listen(text: str) -> tuple[str, int, int]:
    """"ADDR:PORT", "[v6]:PORT" or ":PORT" (all addresses) -> (host, port, family)."""

    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise BadInput(f"--listen {text!r}: expected [ADDR]:PORT for IPv6")
        family = socket.AF_INET6
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise BadInput(f"--listen {text!r}: expected ADDR:PORT")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host == "":
        host = "0.0.0.0"
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):       # ValueError: a NUL inside the text
        raise BadInput(f"--listen {text!r}: {host!r} is not an IP address")
    return host, parse_port(port, "--listen port"), family


def serve(listen: str, routes: dict, config: WebConfig | None = None, *, access_log: bool = False) -> Server:
    """Bind (errors are one line) and return the server; the caller runs serve_forever()."""

    host, port, family = parse_listen(listen)
    config = config or WebConfig()
    handler = make_handler(routes, Authenticator(config.users), access_log=access_log)
    try:
        return Server((host, port), handler, config.ssl_context(), family)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise BadInput(f"cannot listen on {listen}: address already in use")
        if e.errno == errno.EACCES:
            raise NotPermitted(f"cannot listen on {listen}: permission denied (port below ip_unprivileged_port_start?)")
        if e.errno == errno.EADDRNOTAVAIL:
            raise BadInput(f"cannot listen on {listen}: no such local address")
        raise BadInput(f"cannot listen on {listen}: {e.strerror}")
