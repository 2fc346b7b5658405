#!/bin/sh
# Verify an HPKI physician card certificate with the openssl command line.
#
#   verify.sh CERT ISSUING_CA ROOT      (PEM or DER files; needs openssl and curl)
#
# Trust anchor: ROOT only, pinned out of band; ISSUING_CA is untrusted until
# ROOT's signature on it checks. Both revocation sources are asked, hard-fail:
#   1. CRLs, with `openssl verify -crl_check`, in two steps: the issuing CA
#      against the root's ARL (the issuing CA's CRL distribution point), then the
#      card against its CRL (its CRL distribution point) and delta CRL (its
#      freshestCRL, when present). One `-crl_check_all` with both CRLs does the
#      same; two steps tell which certificate failed;
#   2. OCSP: the responder named in the card's AIA, if any; its signature checked up to ROOT.
# Prints "valid", "revoked: <reason> at <time> (<source>)" or "invalid: <why>",
# then "role: ...". Exit status: 0 valid, 1 revoked, 2 invalid.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 CERT ISSUING_CA ROOT" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

invalid() { echo "invalid: $*"; echo "role: ${role:-(unknown)}"; exit 2; }

# PEM copies, whatever the input encoding.
for f in cert:"$1" issuing:"$2" root:"$3"; do
    openssl x509 -in "${f#*:}" -out "$tmp/${f%%:*}.pem" 2>/dev/null ||
        openssl x509 -inform DER -in "${f#*:}" -out "$tmp/${f%%:*}.pem" 2>/dev/null ||
        invalid "cannot read ${f#*:} as a certificate"
done
cert=$tmp/cert.pem issuing=$tmp/issuing.pem root=$tmp/root.pem

# hcRole (ISO 17090, attribute 1.0.17090.0.1 in subjectDirectoryAttributes):
# openssl 3.0 has no name for it, so read the UTF8String of its DER dump.
role=$(openssl x509 -in "$cert" -noout -text -certopt ext_parse |
    sed -n '/Subject Directory Attributes/,/X509v3/s/.*UTF8STRING *:\(.*\)$/\1/p' | paste -sd, -)

# keyUsage: a signing certificate has Non Repudiation, an authentication one Digital Signature.
usage=$(openssl x509 -in "$cert" -noout -ext keyUsage | tail -n +2 | tr -d ' ')
case "$usage" in
    *NonRepudiation*|*DigitalSignature*) ;;
    *) invalid "keyUsage '$usage' allows neither signatures nor authentication" ;;
esac

# URLs come from the certificates themselves.
uri() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | sed -n 's/^ *URI://p' | head -n 1; }
fetch_crl() { # URL NAME: download (DER), convert to PEM, add to the verify options
    curl -fsS --max-time 10 -o "$tmp/$2.der" "$1" || invalid "cannot fetch $1"
    openssl crl -inform DER -in "$tmp/$2.der" -out "$tmp/$2.pem" || invalid "$1 is not a CRL"
    crls="$crls -CRLfile $tmp/$2.pem"
}
crls=""
arl=$(uri "$issuing" crlDistributionPoints); [ -n "$arl" ] || invalid "the issuing CA has no ARL URL"
fetch_crl "$arl" arl
# 1a. The issuing CA: signed by the pinned root, not on the root's ARL.
# shellcheck disable=SC2086 # $crls is a list of options
out=$(openssl verify -crl_check $crls -CAfile "$root" "$issuing" 2>&1) ||
    invalid "issuing CA: $(echo "$out" | grep -m1 'error' || echo "$out")"

crls=""
card_crl=$(uri "$cert" crlDistributionPoints); [ -n "$card_crl" ] || invalid "no CRL distribution point"
fetch_crl "$card_crl" card
delta=$(uri "$cert" freshestCRL)
# -extended_crl too: without it OpenSSL 3.0 may take a delta newer than the full CRL for
# the full one, and miss every revocation only the full lists.
[ -z "$delta" ] || { fetch_crl "$delta" delta; crls="$crls -use_deltas -extended_crl"; }

# 1b. The card: chain up to the pinned root, and its CRL (plus delta).
# shellcheck disable=SC2086
if out=$(openssl verify -crl_check $crls -CAfile "$root" -untrusted "$issuing" "$cert" 2>&1); then
    crl_revoked=""
else
    case "$out" in
        *"certificate revoked"*) crl_revoked=yes ;;
        *) invalid "openssl verify: $(echo "$out" | grep -m1 'error' || echo "$out")" ;;
    esac
fi

# 2. OCSP, from the card's AIA (a card without one, like real HPKI cards, has CRLs only).
# The response must verify up to the root.
ocsp_url=$(openssl x509 -in "$cert" -noout -ocsp_uri)
status=""
if [ -n "$ocsp_url" ]; then
    ocsp=$(openssl ocsp -issuer "$issuing" -cert "$cert" -url "$ocsp_url" -CAfile "$root" -timeout 10 2>&1) ||
        invalid "OCSP request to $ocsp_url failed: $ocsp"
    echo "$ocsp" | grep -q "Response verify OK" || invalid "OCSP response does not verify: $ocsp"
    status=$(echo "$ocsp" | sed -n "s|^$cert: ||p")
fi

if [ "$status" = revoked ] || [ -n "$crl_revoked" ]; then
    if [ "$status" = revoked ]; then # "Reason: keyCompromise", "Revocation Time: Dec  7 04:30:00 2026 GMT"
        reason=$(echo "$ocsp" | sed -n 's/^[[:space:]]*Reason: //p')
        when=$(echo "$ocsp" | sed -n 's/^[[:space:]]*Revocation Time: //p')
        echo "revoked: ${reason:-unspecified} at $when (OCSP${crl_revoked:+ and CRL})"
    else # revoked on a CRL, while OCSP says otherwise: the entry has the reason and date
        serial=$(openssl x509 -in "$cert" -noout -serial | cut -d= -f2)
        entry=$(for c in "$tmp"/card.pem "$tmp"/delta.pem; do [ -f "$c" ] && openssl crl -in "$c" -noout -text; done |
            grep -A4 "Serial Number: $serial")
        when=$(echo "$entry" | sed -n 's/^[[:space:]]*Revocation Date: //p' | head -n 1)
        # "Key Compromise" -> keyCompromise; an entry without a reason code is unspecified.
        reason=$(echo "$entry" | grep -A1 'CRL Reason Code' | tail -n 1 | tr -d ' ' |
            awk '{ print tolower(substr($0, 1, 1)) substr($0, 2) }')
        echo "revoked: ${reason:-unspecified} at $when (CRL${status:+; OCSP says $status})"
    fi
    echo "role: ${role:-(none)}"
    exit 1
fi
[ -z "$ocsp_url" ] || [ "$status" = good ] || invalid "OCSP status '$status'"
case ",$role," in *",Medical Doctor,"*) ;; *) invalid "no hcRole Medical Doctor" ;; esac
echo "valid ($usage)"
echo "role: $role"
