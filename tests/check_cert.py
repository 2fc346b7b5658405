"""Independent check of an issued certificate with Python `cryptography`:
the issuing CA's key verifies its signature, and the HPKI extensions parse.
Usage: check_cert.py EE_PEM ISSUER_PEM (signing|authentication) [SUBJECT_O SAN_O]
With SUBJECT_O and SAN_O, the subject's O (Latin) and the SAN directoryName's
O (kanji) must be exactly those."""
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import ExtensionOID, NameOID

ee = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
kind = sys.argv[3]
key = ca.public_key()
if isinstance(key, ec.EllipticCurvePublicKey):
    key.verify(ee.signature, ee.tbs_certificate_bytes, ec.ECDSA(ee.signature_hash_algorithm))
else:
    key.verify(ee.signature, ee.tbs_certificate_bytes, padding.PKCS1v15(), ee.signature_hash_algorithm)
assert ee.issuer == ca.subject
ku = ee.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
assert ku.critical
if kind == "signing":
    assert ku.value.content_commitment and not ku.value.digital_signature
else:
    assert ku.value.digital_signature and not ku.value.content_commitment
pol = ee.extensions.get_extension_for_oid(ExtensionOID.CERTIFICATE_POLICIES)
assert pol.critical
sda = ee.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.5.29.9"))
assert not sda.critical and b"Medical Doctor" in sda.value.value
san = ee.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
dn = san.get_values_for_type(x509.DirectoryName)[0]
cn = dn.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
assert "\u3000" in cn, cn
if len(sys.argv) > 5:
    subject_o = ee.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    san_o = dn.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert subject_o == sys.argv[4], (subject_o, sys.argv[4])
    assert san_o == sys.argv[5], (san_o, sys.argv[5])
serial_attr = ee.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
print(f"ok {kind} serial={ee.serial_number:x} holder={serial_attr} san_cn={cn}")
