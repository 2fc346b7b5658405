#!/usr/bin/env python3
"""Verify an HPKI physician card certificate the way a relying party does.

Usage: verify.py CERT ISSUING_CA ROOT [--crl]    (PEM or DER files)

Trust anchor: ROOT only, the JMA root you pinned out of band. The issuing CA
certificate is an untrusted intermediate; it is trusted only because ROOT
signed it. Revocation is hard-fail: the card's CRL (from its CRL distribution
point, with its delta CRL) or OCSP (from its AIA), and the root's ARL for the
issuing CA, are fetched over HTTP; no answer means no verdict. --crl: CRLs
only, never OCSP.

Prints one verdict line, then the holder's role:
  valid
  revoked: keyCompromise at 2026-12-07T04:30:00+00:00 (...)
  invalid: <why>
  role: Medical Doctor
Exit status: 0 valid, 1 revoked, 2 invalid.
"""
import asyncio
import sys

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathValidationError, RevokedError
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

HC_ACTOR = "1.0.17090.0.1"  # ISO 17090 id-hcpki-at-healthcareactor (hcRole)
SUBJECT_DIRECTORY_ATTRIBUTES = x509.ObjectIdentifier("2.5.29.9")


def der(path):
    data = open(path, "rb").read()
    return pem.unarmor(data)[2] if pem.detect(data) else data


def tlvs(b):
    """The (tag, content) pairs of a run of DER TLVs (enough for hcRole)."""
    i = 0
    while i < len(b):
        tag, n = b[i], b[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n, i = int.from_bytes(b[i:i + k], "big"), i + k
        yield tag, b[i:i + n]
        i += n


def hc_roles(cert):
    """hcRole: codeDataFreeText ([2] UTF8String) of each HCActor in the
    subjectDirectoryAttributes attribute 1.0.17090.0.1 (docs/profile.md)."""
    try:
        ext = cert.extensions.get_extension_for_oid(SUBJECT_DIRECTORY_ATTRIBUTES)
    except x509.ExtensionNotFound:
        return []
    roles = []

    def walk(b):
        for tag, content in tlvs(b):
            if tag == 0xA2:  # [2] EXPLICIT codeDataFreeText
                roles.extend(c.decode() for t, c in tlvs(content) if t == 0x0C)
            elif tag & 0x20:  # constructed: look inside
                walk(content)

    for _, attribute in tlvs(next(tlvs(ext.value.value))[1]):  # SEQUENCE OF Attribute
        (_, oid), (_, values) = list(tlvs(attribute))
        if oid_text(oid) == HC_ACTOR:
            walk(values)
    return roles


def oid_text(content):
    """Dotted text of an OBJECT IDENTIFIER's content octets."""
    arcs, n = [], 0
    for byte in content:
        n = n << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(n)
            n = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first] + arcs[1:]))


async def main(cert_path, issuing_path, root_path, mode=None):
    cert_der = der(cert_path)
    cert = x509.load_der_x509_certificate(cert_der)
    roles = hc_roles(cert)

    # What the certificate is for: a signing certificate has nonRepudiation
    # (and only that); an authentication certificate has digitalSignature.
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    usage = {"non_repudiation"} if ku.content_commitment else {"digital_signature"}

    # Hard-fail: no revocation information means invalid, never "valid". By
    # default a CRL or an OCSP response will do (OCSP is asked first); --crl
    # requires CRLs for the card and the issuing CA.
    crl_only = RevocationCheckingPolicy(RevocationCheckingRule.CRL_REQUIRED, RevocationCheckingRule.CRL_REQUIRED)
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(der(root_path))],  # pin the root, nothing else
        allow_fetching=True,  # fetch CRLs and OCSP from the URLs in the certificates
        revocation_mode="hard-fail",
        revinfo_policy=CertRevTrustPolicy(crl_only) if mode == "--crl" else None,
    )
    validator = CertificateValidator(
        asn1_x509.Certificate.load(cert_der),
        intermediate_certs=[asn1_x509.Certificate.load(der(issuing_path))],
        validation_context=context,
    )
    status = 0
    try:
        await validator.async_validate_usage(key_usage=usage)
        if "Medical Doctor" not in roles:
            raise PathValidationError("no hcRole Medical Doctor in the certificate")
        print(f"valid ({'signing: nonRepudiation' if ku.content_commitment else 'authentication: digitalSignature'})")
    except RevokedError as e:
        # e.reason is the CRL reason (asn1crypto CRLReason), e.revocation_dt when.
        words = e.reason.native.split("_")
        reason = words[0] + "".join(w.capitalize() for w in words[1:])  # key_compromise -> keyCompromise
        print(f"revoked: {reason} at {e.revocation_dt.isoformat()} ({e})")
        status = 1
    except Exception as e:  # path, signature, usage, revocation unknown, role
        print(f"invalid: {e}")
        status = 2
    finally:
        await context.aclose()  # the HTTP sessions used to fetch CRLs and OCSP
    print(f"role: {', '.join(roles) or '(none)'}")
    return status


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[4:] not in ([], ["--crl"]):
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(*sys.argv[1:])))
