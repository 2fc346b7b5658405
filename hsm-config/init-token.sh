#!/usr/bin/env bash
# Creates (once) the CA's private SoftHSM tokens under STATE_DIR/hsm: one per
# trust domain, each with its own user PIN and SO PIN.
#
#   hsm-config/init-token.sh STATE_DIR [DOMAIN...]
#
# DOMAIN is root, issuing, ocsp, escrow or audit (default: all five, as the
# single-process development CA needs; a production host creates only the
# tokens it holds). Token DOMAIN is labelled hpki-DOMAIN; its PINs are
# STATE_DIR/hsm/DOMAIN.pin and DOMAIN.so-pin (mode 600).
#
# Idempotent: existing PIN files, config and tokens are left alone. Prints the
# SOFTHSM2_CONF path and the token labels, never the PINs.
set -euo pipefail

usage() { echo "usage: $0 STATE_DIR [root|issuing|ocsp|escrow|audit ...]" >&2; exit 2; }
die() { echo "init-token: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || usage
[[ -n "$1" ]] || usage
all_domains=(root issuing ocsp escrow audit)
domains=("${@:2}")
[[ ${#domains[@]} -gt 0 ]] || domains=("${all_domains[@]}")
for d in "${domains[@]}"; do
  case " ${all_domains[*]} " in
    *" $d "*) ;;
    *) die "unknown trust domain \"$d\" (want root, issuing, ocsp, escrow or audit)" ;;
  esac
done

command -v softhsm2-util >/dev/null 2>&1 \
  || die "softhsm2-util not found: install SoftHSM2 first (make setup, or apt-get install softhsm2)"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="$script_dir/softhsm2.conf.template"
[[ -r "$template" ]] || die "missing $template"

# Resolve (symlinks too) before creating anything, so /var/lib is refused up front.
state_dir="$(realpath -m -- "$1")"
case "$state_dir" in
  /var/lib|/var/lib/*) die "refusing to put the token under /var/lib ($state_dir); use a private state folder" ;;
esac
# The path goes into the config through sed and is read by SoftHSM line by line.
case "$state_dir" in
  *'|'*|*'&'*|*'\'*|*$'\n'*) die "state folder path contains | & \\ or a newline: $state_dir" ;;
esac

# Everything the CA keeps secret is created owner-only.
umask 077
hsm_dir="$state_dir/hsm"

# The single-token layout of earlier versions (token "hpki-ca", one user.pin for
# every key) is not converted: its keys are modifiable and copyable, and the root
# key sat next to the online ones.
if [[ -e "$hsm_dir/user.pin" ]]; then
  die "$hsm_dir holds the single-token layout of an earlier version (token \"hpki-ca\", user.pin for every key).
This version keeps one token per trust domain, each with its own PIN, and does not adopt those keys.
Start a fresh state: stop the CA, move $state_dir away (keep it: its audit log and certificates are records),
then run \`make run\` (or: $0 $state_dir && hpki-ca ceremony). See docs/architecture.md, \"Keys\"."
fi
token_dir="$hsm_dir/tokens"
conf="$hsm_dir/softhsm2.conf"
mkdir -p "$token_dir"
chmod 700 "$hsm_dir" "$token_dir"

# Config: rewritten only if missing or different (keeps mtime stable on re-runs).
new_conf="$(sed "s|@TOKENDIR@|$token_dir|g" "$template")"
if [[ ! -f "$conf" ]] || [[ "$(cat "$conf")" != "$new_conf" ]]; then
  printf '%s\n' "$new_conf" > "$conf"
fi
chmod 600 "$conf"

# A random PIN of $1 decimal digits, read from the kernel RNG.
random_pin() {
  local pin=""
  while [[ ${#pin} -lt $1 ]]; do
    pin+="$(head -c 64 /dev/urandom | tr -dc '0-9')"
  done
  printf '%s' "${pin:0:$1}"
}

# The PIN file $1: 16 random digits, made once, owner-only.
ensure_pin() {
  if [[ ! -s "$1" ]]; then
    random_pin 16 > "$1"
  fi
  chmod 600 "$1"
}

export SOFTHSM2_CONF="$conf"
slots="$(softhsm2-util --show-slots)" || die "softhsm2-util --show-slots failed (SOFTHSM2_CONF=$conf)"
# --show-slots prints "Label: <label>" padded to 32 chars; compare trimmed.
labels="$(sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' <<<"$slots" | sed 's/[[:space:]]*$//')"

echo "SOFTHSM2_CONF=$conf"
for domain in "${domains[@]}"; do
  label="hpki-$domain"
  ensure_pin "$hsm_dir/$domain.pin"
  ensure_pin "$hsm_dir/$domain.so-pin"
  if grep -Fxq -- "$label" <<<"$labels"; then
    echo "token \"$label\" already exists; left unchanged" >&2
  else
    # PINs go on the command line: visible in ps to this user for a moment; this is a
    # development token (softhsm2-util has no other non-interactive way).
    softhsm2-util --init-token --free --label "$label" \
      --so-pin "$(cat "$hsm_dir/$domain.so-pin")" --pin "$(cat "$hsm_dir/$domain.pin")" >/dev/null \
      || die "softhsm2-util --init-token failed for \"$label\""
    echo "initialised token \"$label\"" >&2
  fi
  echo "TOKEN_LABEL=$label"
done
