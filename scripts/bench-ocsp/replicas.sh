#!/usr/bin/env bash
# Server side of the "2 replicas behind the nginx cache" row of bench-ocsp.sh:
# two responder processes (`ocsp_bench_server serve` and `replica`, the same
# CA, certificates and responder key, a cache each) on 127.0.0.1:8082 and
# :8083, and nginx in front on :$PORT, configured from
# deploy/nginx/ocsp-cache.conf as shipped (the cache folder and listen port
# substituted, as tests/ocsp_cache_e2e.rs does). Runs in the caller's network
# namespace; nginx runs in the foreground, the replicas are its parent's children.
# Usage: replicas.sh <work-dir> <bench-server> <certs> <revoked-percent> <nginx> <port> <deploy-conf>
set -euo pipefail
dir=$1; bin=$2; certs=$3; revoked=$4; nginx=$5; port=$6; shipped=$7
mkdir -p "$dir/nginx-tmp" "$dir/nginx-cache"
"$bin" serve "$dir" "$certs" "$revoked" 127.0.0.1:8082 >"$dir/replica-a.log" 2>&1 &
up() { curl -s -o /dev/null -H 'Connection: close' --max-time 2 "http://$1$(head -1 "$dir/paths.txt")"; }
for _ in $(seq 1 1200); do [ -s "$dir/paths.txt" ] && up 127.0.0.1:8082 && break; sleep 0.1; done
up 127.0.0.1:8082 || { echo "replica a not answering" >&2; cat "$dir/replica-a.log" >&2; exit 1; }
"$bin" replica "$dir/replica.spec" 127.0.0.1:8083 >"$dir/replica-b.log" 2>&1 &
for _ in $(seq 1 1200); do up 127.0.0.1:8083 && break; sleep 0.1; done
up 127.0.0.1:8083 || { echo "replica b not answering" >&2; cat "$dir/replica-b.log" >&2; exit 1; }
sed -e "s|/var/cache/nginx/hpki-ocsp|$dir/nginx-cache|" -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$port;|" \
  "$shipped" >"$dir/ocsp-cache.conf"
cat >"$dir/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $dir/nginx-tmp/body;
  proxy_temp_path $dir/nginx-tmp/proxy;
  fastcgi_temp_path $dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $dir/nginx-tmp/uwsgi;
  scgi_temp_path $dir/nginx-tmp/scgi;
  include $dir/ocsp-cache.conf;
}
CONF
exec "$nginx" -e "$dir/nginx-error.log" -c "$dir/nginx.conf"
