"""TLS and basic auth of `portscope exporter --web-config`, with real requests against the
real command (a subprocess on a free loopback port), and the config file's error lines."""
from __future__ import annotations

import base64
import errno
import http.client
import shutil
import socket
import ssl
import subprocess
import time

import bcrypt
import pytest

from conftest import PORTSCOPE, free_port, stop_process
from portscope.errors import BadInput
from portscope.webconfig import load, parse_listen

PASSWORD = "s3cret-portscope"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(d / "server.key"), "-out", str(d / "server.crt")],
                   check=True, capture_output=True, timeout=60)
    return d


def _hash(pw: str) -> str:
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=6)).decode()


def write_config(d, text: str):
    p = d / "web.yml"
    p.write_text(text)
    return p


class Running:
    def __init__(self, args):
        self.port = free_port()
        self.p = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{self.port}", *args],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            assert self.p.poll() is None, self.p.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("exporter did not start")

    def stop(self) -> str:
        stop_process(self.p)
        return self.p.stderr.read()


@pytest.fixture
def tls_exporter(certs, netns):
    cfg = write_config(certs, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                              f"basic_auth_users:\n  prom: '{_hash(PASSWORD)}'\n")
    r = Running(["--web-config", str(cfg), "--netns", netns.name])
    try:
        yield r
    finally:
        r.stderr = r.stop()


def get(port, path="/metrics", user=None, pw=None, tls_ca=None):
    if tls_ca:
        ctx = ssl.create_default_context(cafile=str(tls_ca))
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_tls_and_basic_auth(tls_exporter, certs, netns):
    port, ca = tls_exporter.port, certs / "server.crt"
    st, h, body = get(port, user="prom", pw=PASSWORD, tls_ca=ca)
    assert st == 200 and h["Content-Type"].startswith("text/plain; version=")
    assert f'portscope_ephemeral_range_ports{{netns="{netns.name}"}}'.encode() in body
    for user, pw in (("prom", "wrong"), ("nobody", PASSWORD), (None, None), ("prom", "")):
        st, h, body = get(port, user=user, pw=pw, tls_ca=ca)
        assert st == 401, (user, pw)
        assert h["WWW-Authenticate"].startswith("Basic") and b"portscope_" not in body
    # plain HTTP to the TLS port: a clean 400, no metrics, the port keeps serving
    st, h, body = get(port)
    assert st == 400 and b"HTTP request to an HTTPS server" in body
    # a TLS client that does not trust the certificate: handshake refused on its side
    with pytest.raises(ssl.SSLError):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=10)
        c.request("GET", "/metrics")
    # garbage bytes instead of a ClientHello
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x00\x01\x02\x03garbage\r\n\r\n")
        try:
            # on a busy machine the server may have answered and reset before we shut down
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(100)
        except (ConnectionResetError, OSError) as e:   # closed with our bytes unread: a reset
            assert isinstance(e, ConnectionResetError) or e.errno == errno.ENOTCONN, e
            reply = b""
        assert reply == b"" or reply[:1] == b"\x15"        # nothing, or a TLS alert record
    st, _, body = get(port, user="prom", pw=PASSWORD, tls_ca=ca)
    assert st == 200 and b"portscope_scrape_errors_total" in body
    assert get(port, "/nope", user="prom", pw=PASSWORD, tls_ca=ca)[0] == 404
    err = tls_exporter.stop()
    assert "Traceback" not in err


def test_plain_http_default_serves_metrics_and_landing_page(netns):
    r = Running(["--netns", netns.name])
    try:
        st, _, body = get(r.port)
        assert st == 200 and b"portscope_ephemeral_range_ports" in body
        st, _, body = get(r.port, "/")
        assert st == 200 and b'href="metrics"' in body        # the web view (docs/web.md) links to it
    finally:
        err = r.stop()
    assert "serving http://127.0.0.1:" in err and "Traceback" not in err


def test_listen_address_in_use_is_one_line(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, out, err = cli("exporter", "--listen", f"127.0.0.1:{port}")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in err


def test_second_exporter_on_the_same_port_is_refused(cli, netns):
    # a second exporter must not share the port (SO_REUSEPORT) and split the scrapes
    r = Running(["--netns", netns.name])
    try:
        code, out, err = cli("exporter", "--listen", f"127.0.0.1:{r.port}", "--netns", netns.name)
        assert code == 2 and err.count("\n") == 1
        assert f"cannot listen on 127.0.0.1:{r.port}: address already in use" in err
        assert get(r.port)[0] == 200          # the first one keeps serving
    finally:
        r.stop()


@pytest.mark.parametrize("text, msg", [
    ("tls_server_config:\n  cert_file: server.crt\n", "needs both cert_file and key_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_fil: a\n", "unknown tls_server_config key"),
    ("basic_auth_user:\n  a: b\n", "unknown key(s) basic_auth_user"),
    ("basic_auth_users:\n  prom: plaintext\n", "is not a bcrypt hash"),
    ("tls_server_config: [1, 2]\n", "must be a mapping"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n", "min_version"),
    ("a: [\n", "not valid YAML"),
    ("- 1\n", "expected a mapping"),
])
def test_bad_web_config_is_one_line_exit_2(cli, certs, text, msg):
    p = write_config(certs, text)
    code, out, err = cli("exporter", "--web-config", str(p), "--listen", f"127.0.0.1:{free_port()}")
    assert code == 2, err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def bad_keys(certs):
    """A key of another certificate, and server.key encrypted with a passphrase."""
    subprocess.run(["openssl", "genrsa", "-out", str(certs / "other.key"), "2048"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(certs / "server.key"), "-aes128", "-passout", "pass:pw",
                    "-out", str(certs / "enc.key")], check=True, capture_output=True, timeout=60)
    return certs


@pytest.mark.parametrize("tls, named, msg", [
    ("cert_file: missing.crt\n  key_file: server.key", "missing.crt",
     "cannot read cert_file {}: No such file or directory"),
    ("cert_file: server.crt\n  key_file: missing.key", "missing.key",
     "cannot read key_file {}: No such file or directory"),
    ("cert_file: server.crt\n  key_file: server.key\n  client_ca_file: missing-ca.crt\n"
     "  client_auth_type: RequireAndVerifyClientCert", "missing-ca.crt",
     "cannot read client_ca_file {}: No such file or directory"),
    ("cert_file: server.key\n  key_file: server.key", "server.key", "cert_file {} holds no PEM certificate"),
    ("cert_file: server.crt\n  key_file: server.crt", "server.crt", "key_file {} holds no usable PEM private key"),
    ("cert_file: server.crt\n  key_file: other.key", "other.key",
     "key_file {} is not the private key of cert_file"),
    ("cert_file: server.crt\n  key_file: enc.key", "enc.key", "key_file {} is encrypted"),
    ("cert_file: server.crt\n  key_file: server.key\n  client_ca_file: server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert", "server.key", "client_ca_file {} holds no usable PEM certificate"),
])
def test_tls_file_problems_name_the_file(cli, bad_keys, tls, named, msg):
    p = write_config(bad_keys, f"tls_server_config:\n  {tls}\n")
    code, out, err = cli("exporter", "--web-config", str(p), "--listen", f"127.0.0.1:{free_port()}")
    assert code == 2, err
    assert msg.format(bad_keys / named) in err, err
    assert f"web config {p}:" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("raw, at", [
    (b"\xff\xfe", "byte 0xff at line 1, column 1"),
    (b"\xff\xfetls_server_config: {}\n", "byte 0xff at line 1, column 1"),
    # a Latin-1 e-acute inside a path value
    (b"tls_server_config:\n  cert_file: caf\xe9.crt\n  key_file: server.key\n", "byte 0xe9 at line 2, column 17"),
    (b"basic_auth_users:\n  j\xf6rg: '$2b$12$x'\n", "byte 0xf6 at line 2, column 4"),
    # after a BOM the position is still the bad byte's (the BOM is not counted)
    (b"\xef\xbb\xbfabc\nx\xff", "byte 0xff at line 2, column 2"),
])
def test_non_utf8_web_config_is_one_line_exit_2(cli, tmp_path, raw, at):
    p = tmp_path / "web.yml"
    p.write_bytes(raw)
    code, out, err = cli("exporter", "--web-config", str(p), "--listen", f"127.0.0.1:{free_port()}")
    assert code == 2, err
    assert f"web config {p} is not UTF-8 text: {at}" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_utf8_web_config_with_bom_and_non_ascii_paths(certs, tmp_path):
    shutil.copy(certs / "server.crt", tmp_path / "café.crt")
    shutil.copy(certs / "server.key", tmp_path / "clé.key")
    p = tmp_path / "web.yml"
    p.write_bytes(b"\xef\xbb\xbf" + "tls_server_config:\n  cert_file: café.crt\n  key_file: clé.key\n".encode())
    cfg = load(str(p))
    assert cfg.cert_file == str(tmp_path / "café.crt") and cfg.key_file == str(tmp_path / "clé.key") and cfg.tls


def test_oversized_web_config_is_refused(tmp_path):
    p = tmp_path / "huge.yml"
    p.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")      # valid YAML, but no web config is 2 MiB
    with pytest.raises(BadInput, match=f"web config {p} is larger than 1024 KiB"):
        load(str(p))


def test_missing_web_config_file(cli, tmp_path):
    code, _, err = cli("exporter", "--web-config", str(tmp_path / "nope.yml"))
    assert code == 2 and "cannot read web config" in err


def test_relative_paths_resolve_against_the_config_file(certs):
    cfg = load(str(write_config(certs, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")))
    assert cfg.cert_file == str(certs / "server.crt") and cfg.tls and not cfg.users


def test_parse_listen():
    assert parse_listen("127.0.0.1:9917") == ("127.0.0.1", 9917, socket.AF_INET)
    assert parse_listen("[::1]:9917") == ("::1", 9917, socket.AF_INET6)
    assert parse_listen(":9917") == ("0.0.0.0", 9917, socket.AF_INET)


def test_ipv6_listen(netns):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    with socket.socket(socket.AF_INET6) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no ::1 on this host")
        port = s.getsockname()[1]
    p = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"[::1]:{port}", "--netns", netns.name],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        while True:
            try:
                c = http.client.HTTPConnection("::1", port, timeout=10)
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                break
            except OSError:
                assert time.monotonic() < end and p.poll() is None
                time.sleep(0.05)
        assert r.status == 200 and f'netns="{netns.name}"'.encode() in body
    finally:
        p.terminate()
        p.wait(timeout=10)
    assert "serving http://[::1]:" in p.stderr.read()


def test_arrival_is_when_the_request_reached_the_kernel():
    """httpserver.arrival(): what Exporter.render uses to serve a late-parsed request the
    collection it arrived during. It is when the request's bytes arrived (TCP_INFO), not when
    the server got round to it: here the server reads 0.3 s later."""
    import threading

    from portscope.httpserver import arrival, received, serve
    with socket.create_server(("127.0.0.1", 0)) as ls:
        c = socket.create_connection(ls.getsockname()[:2])
        a, _ = ls.accept()
        with c, a:
            sent = time.monotonic()
            c.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.3)
            a.recv(100)
            got = received(a)
            assert got is not None and abs(got - sent) < 0.05    # jiffies: a few ms

    server = serve("127.0.0.1:0", {"/t": lambda: (200, "text/plain", repr(arrival()).encode())})
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        c2 = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        firsts = []
        for _ in range(2):                            # a kept-alive connection: each request its own
            time.sleep(0.3)
            t1 = time.monotonic()
            c2.request("GET", "/t")
            firsts.append((t1, float(c2.getresponse().read()), time.monotonic()))
        c2.close()
    finally:
        server.shutdown()
        server.server_close()
    for before, at, after in firsts:
        assert before - 0.02 <= at <= after
    assert arrival() is None                         # not inside a request here
