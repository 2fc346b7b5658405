#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/seeds/ (small, checked in).
#
#   fuzz/gen-seeds.sh
#
# - seeds/fixtures/: a throw-away EC P-256 test CA and a delegated OCSP
#   responder certificate. The harnesses compile them in (include_bytes!), so
#   the OCSP seeds name an issuer the fuzzed responder answers for.
# - ocsp_request_der/: `openssl ocsp -reqout` requests (SHA-1 and SHA-256
#   CertIDs, with and without nonce, several serials, a foreign issuer).
# - ocsp_get_path/: the same requests as RFC 6960 A.1 GET paths.
# - csr_reader/: `openssl req` CSRs: RSA 2048/3072, RSA 1024 (too small),
#   EC P-256, P-384 (unsupported), Ed25519, RSA-PSS, DER and PEM.
# - issuance_validate/, revocation_validate/, serial_parsers/: protobuf
#   messages encoded with prost (`cargo run --example gen_proto_seeds`).
#
# Re-running changes every key and so every seed: commit the new set whole.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seeds="$here/seeds"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

rm -rf "$seeds/ocsp_request_der" "$seeds/ocsp_get_path" "$seeds/csr_reader"
mkdir -p "$seeds/fixtures" "$seeds/ocsp_request_der" "$seeds/ocsp_get_path" "$seeds/csr_reader"

cd "$tmp"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Test CA and its delegated responder (valid for a century: the responder
# refuses to sign past its certificate's notAfter).
ec ca.key
openssl req -x509 -new -key ca.key -subj "/C=JP/O=HPKI Fuzz/CN=Fuzz Signing CA" -days 36500 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
ec ocsp.key
openssl req -new -key ocsp.key -subj "/C=JP/O=HPKI Fuzz/CN=Fuzz OCSP Responder" -out ocsp.csr
printf 'extendedKeyUsage=OCSPSigning\nkeyUsage=critical,digitalSignature\n1.3.6.1.5.5.7.48.1.5=ASN1:NULL\n' > ocsp.ext
openssl x509 -req -in ocsp.csr -CA ca.pem -CAkey ca.key -set_serial 0x0a -days 36500 -extfile ocsp.ext -out ocsp.pem 2>/dev/null
openssl x509 -in ca.pem -outform DER -out "$seeds/fixtures/ca.der"
openssl x509 -in ocsp.pem -outform DER -out "$seeds/fixtures/responder.der"
# A CA the responder does not answer for.
ec other.key
openssl req -x509 -new -key other.key -subj "/CN=Someone Else" -days 30 -out other.pem

# OCSP requests.
o="$seeds/ocsp_request_der"
req() { local name="$1"; shift; openssl ocsp -reqout "$o/$name.der" "$@" >/dev/null 2>&1; }
req sha1_one_nonce        -issuer ca.pem -serial 0x1234abcd
req sha1_one_no_nonce     -issuer ca.pem -serial 0x01 -no_nonce
req sha256_one_nonce      -sha256 -issuer ca.pem -serial 0x7f0011223344556677889900aabbccdd
req sha256_one_no_nonce   -sha256 -issuer ca.pem -serial 0x45 -no_nonce
req sha1_three            -issuer ca.pem -serial 0x01 -serial 0x02 -serial 0x03
req sha256_two_no_nonce   -sha256 -issuer ca.pem -serial 0x0101 -serial 0x0202 -no_nonce
req nine_serials          -issuer ca.pem -serial 1 -serial 2 -serial 3 -serial 4 -serial 5 -serial 6 -serial 7 -serial 8 -serial 9
req long_serial           -issuer ca.pem -serial 0x0102030405060708090a0b0c0d0e0f101112131415161718 -no_nonce
req foreign_issuer        -issuer other.pem -serial 0x05
req mixed_issuers         -issuer ca.pem -serial 0x05 -issuer other.pem -serial 0x06
openssl ocsp -reqout "$o/signed.der" -issuer ca.pem -serial 0x34 -signer ocsp.pem -signkey ocsp.key >/dev/null 2>&1

# The same requests as GET paths: under the configured /ocsp path and at the
# root, percent-encoded or not, standard and URL-safe base64.
g="$seeds/ocsp_get_path"
for f in "$o"/*.der; do
  n="$(basename "$f" .der)"
  b64="$(base64 -w0 < "$f")"
  printf '/ocsp/%s' "$(printf '%s' "$b64" | sed 's/+/%2B/g; s#/#%2F#g; s/=/%3D/g')" > "$g/$n.ocsp"
  printf '/%s' "$(printf '%s' "$b64" | tr '+/' '-_' | tr -d '=')" > "$g/$n.root_urlsafe"
done
printf '/ocsp/%s' "$(base64 -w0 < "$o/sha1_one_no_nonce.der")" > "$g/raw_slashes.ocsp"
printf '/ocsp/' > "$g/empty.ocsp"
printf '/favicon.ico' > "$g/not_base64"

# CSRs.
c="$seeds/csr_reader"
csr() { # name keyfile [extra req args]
  local name="$1" key="$2"; shift 2
  openssl req -new -key "$key" -subj "/C=JP/O=Fuzz Clinic/CN=Taro Fuzz" "$@" -out "$c/$name.pem"
  openssl req -in "$c/$name.pem" -outform DER -out "$c/$name.der"
}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.key 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out rsa3072.key 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.key 2>/dev/null
openssl genpkey -algorithm ED25519 -out ed25519.key 2>/dev/null
ec p256.key
csr rsa2048 rsa2048.key
csr rsa2048_sha512_ext rsa2048.key -sha512 -addext "subjectAltName=email:taro@example.jp" -addext "keyUsage=critical,nonRepudiation"
csr rsa3072 rsa3072.key
csr rsa1024_too_small rsa1024.key
csr rsa2048_pss rsa2048.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sha256
csr p256 p256.key
csr p256_sha384 p256.key -sha384
csr p384_unsupported p384.key
csr ed25519_unsupported ed25519.key
rm -f "$c"/*_pss.pem "$c"/p384_unsupported.pem "$c"/ed25519_unsupported.pem "$c"/rsa3072.pem "$c"/p256_sha384.pem
printf -- '-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n' > "$c/pem_wrong_label.pem"

# Protobuf seeds (prost encodings of the gRPC request messages).
cd "$here"
cargo run --quiet --example gen_proto_seeds -- "$seeds"

echo "seeds:"
for d in "$seeds"/*/; do printf '  %-22s %3d files %6d bytes\n' "$(basename "$d")" "$(ls "$d" | wc -l)" "$(cat "$d"/* | wc -c)"; done
