"""Fixture images made by the tests themselves: metadata writers and a C2PA test signer (own test CA)."""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

IPTC_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def tiny(color: tuple[int, int, int] = (120, 30, 200)) -> Image.Image:
    return Image.new("RGB", (16, 16), color)


def _xmp_packet(body: str) -> bytes:
    """A complete XMP packet; ``body`` continues the rdf:Description start tag (attributes, then ``>``)."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
        f" {body}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


@pytest.fixture
def xmp_packet() -> Callable[[str], bytes]:
    return _xmp_packet


@pytest.fixture
def iptc_ai() -> str:
    return IPTC_AI


@pytest.fixture
def write_jpeg(tmp_path: Path) -> Callable[..., Path]:
    """Save a tiny JPEG with optional raw ``xmp`` bytes and an ``exif`` (Image.Exif or raw bytes)."""

    def write(name: str = "x.jpg", *, xmp: bytes | None = None, exif: Any = None) -> Path:
        path = tmp_path / name
        kwargs: dict[str, Any] = {}
        if xmp is not None:
            kwargs["xmp"] = xmp
        if exif is not None:
            kwargs["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
        tiny().save(path, "JPEG", **kwargs)
        return path

    return write


@pytest.fixture
def write_png(tmp_path: Path) -> Callable[..., Path]:
    """Save a tiny PNG with text chunks: ``texts`` as (kind, key, value) with kind tEXt, zTXt or iTXt."""

    def write(name: str = "x.png", texts: tuple[tuple[str, str, str], ...] = (), exif: Any = None) -> Path:
        info = PngImagePlugin.PngInfo()
        for kind, key, value in texts:
            if kind == "iTXt":
                info.add_itxt(key, value, zip=True)
            else:
                info.add_text(key, value, zip=kind == "zTXt")
        path = tmp_path / name
        kwargs: dict[str, Any] = {"pnginfo": info}
        if exif is not None:
            kwargs["exif"] = exif.tobytes()
        tiny().save(path, "PNG", **kwargs)
        return path

    return write


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "apn tests")])


def _key_usage(*, signer: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(digital_signature=signer, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signer,
                         crl_sign=not signer, encipher_only=False, decipher_only=False)


def make_test_chain() -> tuple[bytes, bytes, bytes]:
    """(signer chain PEM, signer private key PEM, CA certificate PEM): an ES256 CA and end-entity cert.

    The end-entity certificate carries what the C2PA certificate profile demands: not a CA, critical key
    usage with digitalSignature, an allowed extended key usage (emailProtection), subject and authority
    key identifiers; the CA is a separate certificate because C2PA rejects self-signed signers.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ee_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def base(subject: str, issuer: str, key: Any) -> Any:
        return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))

    ca = (base("apn test CA", "apn test CA", ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(signer=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ee = (base("apn test signer", "apn test CA", ee_key)
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(_key_usage(signer=True), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ee.public_bytes(pem) + ca.public_bytes(pem), key_pem, ca.public_bytes(pem)


@pytest.fixture(scope="session")
def test_chain() -> tuple[bytes, bytes, bytes]:
    pytest.importorskip("cryptography", exc_type=ImportError)
    return make_test_chain()


@pytest.fixture
def c2pa_sign(tmp_path: Path, test_chain: tuple[bytes, bytes, bytes]) -> Callable[..., Path]:
    """Sign a tiny JPEG/PNG with the official c2pa library's Builder and a Signer from the test chain."""
    c2pa = pytest.importorskip("c2pa", exc_type=ImportError)  # ImportError too: native library missing

    def sign(name: str, actions: list[dict[str, Any]], generator: str = "apn-tests") -> Path:
        fmt, mime = ("PNG", "image/png") if name.endswith(".png") else ("JPEG", "image/jpeg")
        source = io.BytesIO()
        tiny().save(source, fmt)
        source.seek(0)
        chain, key, _ca = test_chain
        manifest = {
            "claim_generator_info": [{"name": generator, "version": "1.0"}],
            "title": name,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
        }
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
        dest = io.BytesIO()
        with signer, c2pa.Builder(manifest) as builder:
            builder.sign(signer, mime, source, dest)
        path = tmp_path / name
        path.write_bytes(dest.getvalue())
        return path

    return sign
