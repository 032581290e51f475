"""`vrcap serve --tls`: the generated certificate verified by httpx, its fingerprint as printed, and the page
recording a WebXR session over https/wss in chromium, which trusts exactly that certificate (by its SPKI hash).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import run_vrcap, wait_for
from tests.server.live import ServeProcess
from tests.server.webxr_rig import headset_browser

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


class TLSServe(ServeProcess):
    """`vrcap serve --tls`: ready once the certificate exists and https answers, verified against it."""

    def _wait_ready(self, timeout: float = 30.0) -> None:
        self.url = f"https://127.0.0.1:{self.port}"
        self.cert = self.root / ".vrcap" / "tls" / "cert.pem"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vrcap serve exited with {self.proc.returncode}:\n{self.log()}")
            if self.cert.is_file():
                with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                    if (
                        httpx.get(self.url + "/api/v1/health", verify=self.context(), timeout=1).status_code
                        == 200
                    ):
                        return
            time.sleep(0.1)
        raise RuntimeError(f"vrcap serve --tls did not answer in {timeout} s:\n{self.log()}")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def tls_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServe]:
    with TLSServe(tmp_path_factory.mktemp("tls-root"), "--tls") as server:
        yield server


def test_https_verifies_against_the_generated_certificate_and_its_printed_fingerprint(
    tls_serve: TLSServe,
) -> None:
    with httpx.Client(base_url=tls_serve.url, verify=tls_serve.context(), timeout=30) as client:
        headers = {"Authorization": f"Bearer {tls_serve.token}"}
        assert client.get("/api/v1/recordings/current", headers=headers).json()["state"] == "idle"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(
            tls_serve.url + "/api/v1/health", timeout=10
        )  # the system's CAs do not know it: self-signed
    served = ssl.get_server_certificate(("127.0.0.1", tls_serve.port))  # what the handshake really presents
    der = ssl.PEM_cert_to_DER_cert(served)
    expected = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    log = tls_serve.log()
    assert f"fingerprint {expected}" in log
    assert f"pair a headset with https://127.0.0.1:{tls_serve.port}/#token={tls_serve.token}" in log
    assert log.count("█") > 200  # the QR code of the pairing URL
    key = tls_serve.root / ".vrcap" / "tls" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    names = x509.load_pem_x509_certificate(tls_serve.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)


def test_the_certificate_is_kept_across_restarts(tmp_path: Path) -> None:
    with TLSServe(tmp_path / "root", "--tls") as first:
        before = first.cert.read_bytes()
    with TLSServe(tmp_path / "root", "--tls") as second:
        assert second.cert.read_bytes() == before  # the headset trusts it once, not at every start


def test_a_missing_user_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_vrcap(
        "serve", "--root", str(tmp_path), "--tls-cert", str(tmp_path / "no.pem"), "--tls-key", "k"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().count("\n") == 0
        and "no such file" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = run_vrcap("serve", "--root", str(tmp_path), "--tls-cert", str(tmp_path / "no.pem"))
    assert result.returncode == 2 and "go together" in result.stderr


def spki_hash(cert: Path) -> str:
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_the_page_records_a_webxr_session_over_https(tls_serve: TLSServe) -> None:
    # The rig's flags, plus trust in exactly this certificate (no --ignore-certificate-errors for all).
    trust = f"--ignore-certificate-errors-spki-list={spki_hash(tls_serve.cert)}"
    with headset_browser(extra_args=[trust]) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{tls_serve.url}/#token={tls_serve.token}")
        page.wait_for_selector("#main", state="visible")
        assert page.evaluate("() => window.isSecureContext") is True
        wait_for(
            lambda: page.locator("#source").input_value() == "webxr", 10, "the picker to offer this headset"
        )
        page.select_option("#mic", "none")
        page.fill("#session", "over-https")
        page.click("#start")
        wait_for(
            lambda: "recording from this headset" in page.locator("#rec-msg").inner_text(), 20, "the welcome"
        )
        assert re.match(r"^wss://", page.evaluate("() => window.vrcapCapture.o.wsUrl"))
        wait_for(lambda: page.evaluate("() => window.vrcapCapture.frames") > 30, 20, "frames over wss")
        page.evaluate("() => window.vrcapCapture.session.end()")
        wait_for(
            lambda: "saved" in page.locator("#rec-msg").inner_text(), 30, "the page to stop the recording"
        )
    path = tls_serve.root / "sessions" / "over-https"
    assert run_vrcap("validate", str(path)).returncode == 0
