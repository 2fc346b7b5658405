#!/usr/bin/env bash
# Installs what the CA and its tests need on Debian, only when missing.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(libsofthsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The fuzz harnesses' replay (scripts/test.sh) builds libFuzzer, which is C++.
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v curl >/dev/null 2>&1 || need+=(curl)
# tests/deploy_e2e.rs runs `systemd-analyze verify` on deploy/systemd.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# tests/long_term_e2e.rs lets years pass for the CA processes with libfaketime.
command -v faketime >/dev/null 2>&1 || need+=(faketime)
# tests/ocsp_cache_e2e.rs runs deploy/nginx/ocsp-cache.conf with Debian's nginx.
[ -x /usr/sbin/nginx ] || need+=(nginx)
# examples/relying-party/Verify.java runs as `java Verify.java`: source-file mode needs a JDK.
java --list-modules 2>/dev/null | grep '^jdk.compiler' >/dev/null || need+=(openjdk-17-jdk-headless)
# tests/console_browser_e2e.rs drives the operator console in Debian's chromium
# (Playwright, below), with Japanese fonts for its screenshots.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
# The store's PostgreSQL backend is tested against a throwaway cluster per test
# run (initdb in a temp folder, as the `postgres` user when root).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need[*]}; run 'make setup' as root (apt-get install)" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Tests start their own clusters: no system-wide "main" cluster and service.
    mkdir -p /etc/postgresql-common/createcluster.d
    [ -e /etc/postgresql-common/createcluster.d/hpki.conf ] ||
        echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/hpki.conf
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Tools we did not write, to judge our output: pkilint, Python cryptography,
# and pyHanko's certvalidator (examples/relying-party/verify.py); Playwright
# drives chromium for the console's browser test (never `playwright install`:
# it uses Debian's chromium).
venv="$(dirname "$0")/../.venv"
if [ ! -x "$venv/bin/lint_pkix_cert" ] ||
    ! "$venv/bin/python" -c 'import cryptography, pyhanko, pyhanko_certvalidator, playwright' >/dev/null 2>&1; then
    echo "setup: installing pkilint, cryptography, pyhanko and playwright into .venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pkilint cryptography pyhanko pyhanko-certvalidator playwright
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo (Rust 1.88 or newer) is required; install it with rustup" >&2
    exit 1
fi
echo "setup: ok ($(softhsm2-util --version | head -n1), $(openssl version), $(cargo --version))"
