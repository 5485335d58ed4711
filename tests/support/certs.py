"""Test certificates: a throw-away CA and a server certificate for 127.0.0.1.

Made with the ``openssl`` command line tool (present wherever OpenSSL is), or
with the ``cryptography`` package when that is installed and ``openssl`` is
not.  A real CA plus a leaf signed by it (rather than one self-signed leaf)
keeps verification working under the stricter checks of newer Pythons
(``VERIFY_X509_STRICT``, Python 3.13).

    certs = make_certs(workdir)
    certs.cafile, certs.certfile, certs.keyfile
"""

import collections
import datetime
import ipaddress
import os
import shutil
import subprocess

import pytest

__all__ = ["Certs", "make_certs", "available"]

Certs = collections.namedtuple("Certs", "cafile certfile keyfile")

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _have_cryptography():
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def available():
    """True when certificates can be made here."""
    return shutil.which("openssl") is not None or _have_cryptography()


def make_certs(directory):
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` into ``directory``.

    Skips the calling test (saying why) when neither ``openssl`` nor
    ``cryptography`` is available.
    """
    certs = Certs(*(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key")))
    if shutil.which("openssl"):
        _with_openssl(directory, certs)
    elif _have_cryptography():
        _with_cryptography(certs)
    else:
        pytest.skip("cannot make test certificates: neither the openssl command nor the "
                    "cryptography package is available")
    return certs


def _run(args, cwd):
    done = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], done.stderr))


def _with_openssl(directory, certs):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key = os.path.join(directory, "ca.key")
    csr = os.path.join(directory, "server.csr")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write(_SERVER_EXTENSIONS)
    _run(["req", "-x509", "-new"] + ec + ["-keyout", ca_key, "-out", certs.cafile, "-days", "2",
          "-subj", "/CN=gdaemon test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], directory)
    _run(["req", "-new"] + ec + ["-keyout", certs.keyfile, "-out", csr, "-subj", "/CN=127.0.0.1"], directory)
    _run(["x509", "-req", "-in", csr, "-CA", certs.cafile, "-CAkey", ca_key, "-set_serial", "2",
          "-days", "2", "-out", certs.certfile, "-extfile", ext], directory)


def _with_cryptography(certs):  # pragma: no cover - used where openssl is missing
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gdaemon test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(1)
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(certs.cafile, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(certs.certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(certs.keyfile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
