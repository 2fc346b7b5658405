#!/usr/bin/env bash
# Creates (once) a private SoftHSM token for the CA under STATE_DIR/hsm.
#
#   hsm-config/init-token.sh STATE_DIR [TOKEN_LABEL]     (default label: hpki-ca)
#
# Idempotent: existing PIN files, config and token are left alone. Prints the
# SOFTHSM2_CONF path and token label, never the PINs (they are in STATE_DIR/hsm/*.pin).
set -euo pipefail

usage() { echo "usage: $0 STATE_DIR [TOKEN_LABEL]" >&2; exit 2; }
die() { echo "init-token: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || usage
[[ -n "$1" ]] || usage
label="${2:-hpki-ca}"
[[ -n "$label" && ${#label} -le 32 ]] || die "token label must be 1-32 characters"

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

for name in user so; do
  pin_file="$hsm_dir/$name.pin"
  if [[ ! -s "$pin_file" ]]; then
    random_pin 16 > "$pin_file"
  fi
  chmod 600 "$pin_file"
done

export SOFTHSM2_CONF="$conf"
slots="$(softhsm2-util --show-slots)" || die "softhsm2-util --show-slots failed (SOFTHSM2_CONF=$conf)"
# --show-slots prints "Label: <label>" padded to 32 chars; compare trimmed.
if sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' <<<"$slots" | sed 's/[[:space:]]*$//' \
    | grep -Fxq -- "$label"; then
  echo "token \"$label\" already exists; left unchanged" >&2
else
  # PINs go on the command line: visible in ps to this user for a moment; this is a
  # development token (softhsm2-util has no other non-interactive way).
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$hsm_dir/so.pin")" --pin "$(cat "$hsm_dir/user.pin")" >/dev/null \
    || die "softhsm2-util --init-token failed"
  echo "initialised token \"$label\"" >&2
fi

echo "SOFTHSM2_CONF=$conf"
echo "TOKEN_LABEL=$label"
