"""HTTPS for headsets on the LAN: WebXR runs only in a secure context, and a headset reaches the PC by its address.

``vrcap serve --tls`` makes (once) a self-signed certificate for this machine's names and addresses and keeps it
under the root, so the headset's browser is asked to trust it once, not at every start:

    <root>/.vrcap/tls/cert.pem   the certificate (public)
    <root>/.vrcap/tls/key.pem    its private key, mode 0600

The SHA-256 fingerprint printed beside the pairing URL is what the user compares with the one the headset's
browser shows before trusting the certificate. ``--tls-cert``/``--tls-key`` take the user's own instead (a
certificate from the lab's CA). The `cryptography` and `qrcode` packages are the ``tls`` extra.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import os
import socket
from pathlib import Path

from vrcap.errors import UsageError

TLS_DIR = "tls"
VALID_DAYS = 825  # the longest validity Apple's and Google's browsers accept for a server certificate
_HINT = "`vrcap serve --tls` needs the tls extra: pip install 'vrcap[tls]' (cryptography, qrcode)"


def lan_address() -> str | None:
    """The address other machines reach this one by (the route to the internet's), or None offline.

    A UDP socket "connected" to a public address sends nothing; it only makes the kernel pick the route.
    """
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, but a default route still applies
        address = s.getsockname()[0]
        return None if address.startswith("0.") else address
    return None


def certificate_names(bind_host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the generated certificate covers: loopback, this host, its LAN address."""
    names = ["localhost", socket.gethostname()]
    addresses = ["127.0.0.1", "::1"]
    lan = lan_address()
    if lan:
        addresses.append(lan)
    try:
        ipaddress.ip_address(bind_host)
        if bind_host not in ("0.0.0.0", "::"):
            addresses.append(bind_host)
    except ValueError:
        names.append(bind_host)
    return sorted(set(names)), sorted(set(addresses))


def ensure_certificate(state_dir: Path, bind_host: str) -> tuple[Path, Path]:
    """The certificate and key under the root, made now when missing (or unreadable as a certificate)."""
    folder = state_dir / TLS_DIR
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.is_file() and key.is_file():
        with contextlib.suppress(ValueError, OSError):
            fingerprint(cert)
            return cert, key
    _generate(folder, cert, key, *certificate_names(bind_host))
    return cert, key


def _generate(folder: Path, cert_path: Path, key_path: Path, names: list[str], addresses: list[str]) -> None:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise UsageError(_HINT) from None
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vrcap on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = key_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.replace(tmp, key_path)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate (DER), as browsers show it: ``AB:CD:...``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
    except ImportError:
        raise UsageError(_HINT) from None
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


def check_user_pair(cert: Path, key: Path) -> None:
    """``--tls-cert``/``--tls-key``: both given, both readable, the certificate parses."""
    for what, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(
                f"{what} {path}: no such file; give a PEM file (or use --tls alone for a generated one)"
            )
    try:
        fingerprint(cert)
    except ValueError:
        raise UsageError(f"--tls-cert {cert}: not a PEM certificate") from None


def qr_lines(text: str) -> str:
    """``text`` as a QR code in the terminal (half-block characters, two modules per character row)."""
    try:
        import qrcode
    except ImportError:
        raise UsageError(_HINT) from None
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(text)
    out = io.StringIO()
    code.print_ascii(out=out, tty=False, invert=True)
    return out.getvalue()
