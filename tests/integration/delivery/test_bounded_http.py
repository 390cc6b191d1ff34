"""The bounded HTTP exchange under the webhook target (rotation.targets.bounded_http) against real
local servers: TLS is verified as requests verifies it (REQUESTS_CA_BUNDLE, else certifi), a
redirect is not followed, and a hang before the status line ends at the deadline."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rotation.targets.bounded_http import DeadlineExceeded, ExchangeFailed, post


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a fresh self-signed certificate; yields (base URL, CA file)."""
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("hooks.example.test")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{srv.server_address[1]}", str(d / "cert.pem")
    srv.shutdown()
    srv.server_close()


def _post(url: str, deadline: float = 10.0):
    return post(url, b"{}", {"Content-Type": "application/json"}, deadline=time.monotonic() + deadline,
                connect_timeout=3, read_timeout=5, max_body_bytes=1024)


def test_an_untrusted_certificate_is_refused(tls_server, monkeypatch):
    url, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(ExchangeFailed, match="SSLCertVerificationError"):
        _post(url + "/hook")


def test_a_certificate_trusted_through_requests_ca_bundle_is_accepted(tls_server, monkeypatch):
    url, ca = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    assert _post(url + "/hook").status == 204


def test_connect_to_pins_the_address_while_tls_checks_the_name(tls_server, monkeypatch):
    """The socket goes to the checked address; SNI, the certificate check and Host use the name
    (which this machine cannot even resolve)."""
    url, ca = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    port = url.rsplit(":", 1)[1]
    answer = post(f"https://hooks.example.test:{port}/hook", b"{}", {}, deadline=time.monotonic() + 10,
                  connect_timeout=3, read_timeout=5, max_body_bytes=1024, connect_to="127.0.0.1")
    assert answer.status == 204


def test_a_redirect_is_answered_as_is_never_followed(tls_server, monkeypatch):
    url, ca = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    assert _post(url + "/redirect").status == 307


def test_a_peer_that_never_completes_the_tls_handshake_is_cut_at_the_deadline():
    """Accepts TCP, sends a TLS record header announcing a 16 KiB handshake record, then one byte
    of it every 0.2 s: every read returns in time, the handshake never ends; the deadline (2 s)
    still does."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def trickle():
        conn, _ = srv.accept()
        try:
            conn.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.wait(0.2):
                conn.sendall(b"\x16")
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    done, out = threading.Event(), {}

    def run():
        try:
            _post(f"https://127.0.0.1:{srv.getsockname()[1]}/hook", deadline=2.0)
        except ExchangeFailed as exc:
            out["exc"] = exc
        done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        assert done.wait(60), "the exchange is still held by a trickling TLS peer"
    finally:
        stop.set()
        srv.close()
    assert isinstance(out.get("exc"), DeadlineExceeded)
