#!/usr/bin/env bash
# OCSP load benchmark (`make bench-ocsp`): the same GET requests for 10,000
# certificates (10 % revoked) against
#   (a) our responder (populated cache, RSA-2048 responder key in SoftHSM),
#   (b) `openssl ocsp -index ... -multi 2` over the same serials,
#   (c) nginx serving one fixed response of the same size (the ceiling),
#   (d) two responder processes (a cache each) behind nginx configured from
#       deploy/nginx/ocsp-cache.conf (scripts/bench-ocsp/replicas.sh); the
#       nginx cache starts empty, so the first request of each path goes to a
#       replica and the rest are cache hits,
# each server and its wrk load inside a network namespace of its own (loopback
# only; `openssl ocsp -port` binds every interface otherwise). Then resident
# memory with 1M cached responses, revocation-to-`revoked` propagation, and the
# cold path: GETs of serials never asked before (each a live RSA-2048 SoftHSM
# signature through the responder, live-signing buckets raised out of the way)
# as a ratio of raw signatures with the same key on as many threads, measured
# before and after it in the same command.
#
# Knobs (environment): DURATION (s per target, 10), WARMUP (s of unmeasured load
# filling the nginx cache before row (d), 3), CONNS (32), THREADS (wrk, 2),
# CERTS (10000), REVOKED (% revoked, 10), MEMORY_COUNT (1000000), ROUNDS (20),
# COLD_SECONDS (s of raw signing and of cold-path load each, in 5 interleaved rounds, 10; concurrency = CONNS), KEEP=1 keeps the work folder,
# PIN (1: each server on the first half of the CPUs, the load generator on the other
# half, so the load generator's threads do not preempt the server's; 0: no pinning).
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
CERTS=${CERTS:-10000}
REVOKED=${REVOKED:-10}
MEMORY_COUNT=${MEMORY_COUNT:-1000000}
ROUNDS=${ROUNDS:-20}
COLD_SECONDS=${COLD_SECONDS:-10}
PIN=${PIN:-1}
PORT=8080
ncpu=$(nproc)
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPUS="0-$((ncpu / 2 - 1))"; LOAD_CPUS="$((ncpu / 2))-$((ncpu - 1))"
  SERVER_PIN="taskset -c $SERVER_CPUS"; LOAD_PIN="taskset -c $LOAD_CPUS"
else
  SERVER_PIN=""; LOAD_PIN=""
fi
CARGO=${CARGO:-cargo}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

# --- tools -------------------------------------------------------------------
missing=()
for t in wrk h2load nginx openssl unshare ip curl softhsm2-util; do
  command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: wrk nghttp2-client nginx-light iproute2 util-linux curl softhsm2 (missing: ${missing[*]})" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nghttp2-client nginx-light iproute2 util-linux curl softhsm2 \
      openssl >/dev/null
  else
    echo "missing tools: ${missing[*]} (apt-get install wrk nghttp2-client nginx-light iproute2 curl softhsm2)" >&2
    exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ "$(id -u)" = 0 ]; then NETNS=(unshare -n); else NETNS=(unshare -r -n); fi

# --- build -------------------------------------------------------------------
echo "building the bench server (release)..." >&2
(cd "$root" && $CARGO build -q --release -p ocsp --features bench --example ocsp_bench_server)
BIN="$root/target/release/examples/ocsp_bench_server"

WORK=$(mktemp -d /tmp/bench-ocsp.XXXXXX)
chmod 755 "$WORK" # nginx workers run as www-data
cleanup() { if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
cp "$here/bench-ocsp/rotate.lua" "$WORK/rotate.lua"
export PATHS_FILE="$WORK/paths.txt"

# Runs, inside a fresh network namespace: the server command ($2), waits until
# it answers, checks one revoked and one good answer, then the wrk load, then
# stops the server and everything it started (by process id).
# Probes and checks send `Connection: close`: OpenSSL 3.0's responder spins
# forever on a kept-alive connection the client closes (even a bare TCP
# connect), which would leave it without a free child for the load.
run_target() {
  local name=$1 server=$2
  "${NETNS[@]}" bash -s -- "$name" "$server" <<'INNER'
set -euo pipefail
name=$1; server=$2
ip link set lo up
$SERVER_PIN bash -c "$server" >"$WORK/$name.server.log" 2>&1 &
pid=$!
kill_tree() {
  local p=$1 c
  for c in $(pgrep -P "$p" || true); do kill_tree "$c"; done
  kill -TERM "$p" 2>/dev/null || true
  sleep 0.2
  kill -KILL "$p" 2>/dev/null || true
}
trap 'kill_tree $pid' EXIT
ready=
for _ in $(seq 1 900); do
  kill -0 $pid 2>/dev/null || { echo "$name: server died" >&2; cat "$WORK/$name.server.log" >&2; exit 1; }
  if [ -s "$PATHS_FILE" ] && curl -s -o /dev/null -H 'Connection: close' --max-time 2 \
      "http://127.0.0.1:$PORT$(head -1 "$PATHS_FILE")"; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "$name: not answering" >&2; exit 1; }
# Sanity: the first path is a revoked certificate, the last a good one (nginx: the fixed response).
for line in 1 $(wc -l <"$PATHS_FILE"); do
  path=$(sed -n "${line}p" "$PATHS_FILE")
  curl -s -H 'Connection: close' -o "$WORK/$name.check.der" "http://127.0.0.1:$PORT$path" || true
  st=$(openssl ocsp -respin "$WORK/$name.check.der" -resp_text -noverify 2>/dev/null | sed -n 's/^ *Cert Status: //p' | head -1 || true)
  echo "CHECK $name line=$line status=${st:-none} bytes=$(stat -c %s "$WORK/$name.check.der" 2>/dev/null || echo 0)"
done
# CPU time (user + system, clock ticks) of the server and all its descendants.
tree_cpu() {
  local p=$1 c t
  t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
  for c in $(pgrep -P "$p" || true); do t=$((t + $(tree_cpu "$c"))); done
  echo "$t"
}
# Warm-up of (d), not measured: fills the nginx cache. (Not for openssl ocsp: its
# children spin on a kept-alive connection the client closes, see above.)
if [ "$name" = replicas ] && [ "$WARMUP" -gt 0 ]; then
  $LOAD_PIN wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" --timeout 5s -s "$WORK/rotate.lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
fi
cpu0=$(tree_cpu $pid)
$LOAD_PIN wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$WORK/rotate.lua" "http://127.0.0.1:$PORT" >"$WORK/$name.wrk" 2>&1 || true
cpu1=$(tree_cpu $pid)
grep '^RESULT' "$WORK/$name.wrk" | sed "s/^RESULT/RESULT $name wrk/;s/\$/ server_cpu_ticks=$((cpu1 - cpu0)) clk_tck=$(getconf CLK_TCK)/" || true
# The same load from h2load (HTTP/1.1, the same connections and paths); p99 from its per-request log.
if [ "$name" != openssl ] && command -v h2load >/dev/null; then
  sed "s|^|http://127.0.0.1:$PORT|" "$PATHS_FILE" >"$WORK/$name.uris"
  cpu0=$(tree_cpu $pid)
  $LOAD_PIN h2load --h1 -c "$CONNS" -t "$THREADS" -D "$DURATION" -i "$WORK/$name.uris" --log-file "$WORK/$name.h2log" \
    >"$WORK/$name.h2" 2>&1 || true
  cpu1=$(tree_cpu $pid)
  secs=$(sed -n 's/^finished in \([0-9.]*\)s.*/\1/p' "$WORK/$name.h2")
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$WORK/$name.h2")
  bad=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$WORK/$name.h2" |
    awk '{ print $1 + $2 + $3 }')
  cut -f3 "$WORK/$name.h2log" | sort -n | awk -v n="${ok:-0}" -v s="${secs:-0}" -v bad="${bad:-0}" \
      -v t=$((cpu1 - cpu0)) -v h="$(getconf CLK_TCK)" -v name="$name" '
    { d[NR] = $1; sum += $1 }
    END { if (NR == 0) exit
      k = int(NR * 0.99); if (k < 1) k = 1
      printf "RESULT %s h2load requests=%d duration_us=%d mean_us=%.1f p99_us=%.1f status_errors=0 socket_errors=%d server_cpu_ticks=%d clk_tck=%d\n",
        name, n, s * 1e6, sum / NR, d[k], bad, t, h }'
fi
INNER
}
export WORK PORT THREADS CONNS DURATION WARMUP PATHS_FILE SERVER_PIN LOAD_PIN

# (a) ours; it also writes the request paths and the files for (b) and (c).
results=$(run_target ours "'$BIN' serve '$WORK' $CERTS $REVOKED 127.0.0.1:$PORT")
echo "$results" | grep '^CHECK' >&2
# The revoked certificates come first in paths.txt.
res_a=$(echo "$results" | grep '^RESULT ours wrk' || true)
h2_a=$(echo "$results" | grep '^RESULT ours h2load' || true)

results=$(run_target openssl "cd '$WORK' && exec openssl ocsp -index index.txt -CA ca.pem -rsigner rsigner.pem -rkey rkey.pem -port $PORT -multi 2 -nmin 60")
echo "$results" | grep '^CHECK' >&2
res_b=$(echo "$results" | grep '^RESULT openssl wrk' || true)

mkdir -p "$WORK/nginx-tmp"
sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$PORT|g" "$here/bench-ocsp/nginx.conf.in" >"$WORK/nginx.conf"
results=$(run_target nginx "exec '$NGINX' -e '$WORK/nginx-error.log' -c '$WORK/nginx.conf'")
echo "$results" | grep '^CHECK' >&2
res_c=$(echo "$results" | grep '^RESULT nginx wrk' || true)
h2_c=$(echo "$results" | grep '^RESULT nginx h2load' || true)

# (d) two replicas behind the shipped nginx cache configuration.
results=$(PATHS_FILE="$WORK/replicas/paths.txt" run_target replicas \
  "exec '$here/bench-ocsp/replicas.sh' '$WORK/replicas' '$BIN' $CERTS $REVOKED '$NGINX' $PORT '$root/deploy/nginx/ocsp-cache.conf'")
echo "$results" | grep '^CHECK' >&2
res_d=$(echo "$results" | grep '^RESULT replicas wrk' || true)
h2_d=$(echo "$results" | grep '^RESULT replicas h2load' || true)

# --- memory, propagation, cold path --------------------------------------------
echo "measuring memory with $MEMORY_COUNT cached responses..." >&2
mem=$("$BIN" memory "$MEMORY_COUNT" 2>/dev/null | grep '^MEMORY' || true)
echo "measuring revocation propagation ($ROUNDS rounds)..." >&2
prop=$("$BIN" propagation "$ROUNDS" 2>/dev/null | grep '^PROPAGATION' || true)
echo "measuring the cold path (2 x $COLD_SECONDS s, raw and cold interleaved)..." >&2
cold=$("$BIN" cold "$COLD_SECONDS" "$CONNS" 2>/dev/null | grep '^COLD' || true)

# --- table -------------------------------------------------------------------
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
rps() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { if (d > 0) printf "%.0f", r / (d / 1e6); else print 0 }'; }
ms() { awk -v u="$(field "$1" "$2")" 'BEGIN { if (u != "") printf "%.2f", u / 1000; else print "-" }'; }
ceiling=$(rps "$res_c")
ratio() { awk -v a="$1" -v c="$ceiling" 'BEGIN { if (c > 0) printf "%.3f", a / c; else print "-" }'; }

cores=$(nproc)
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
size=$(stat -c %s "$WORK/fixed.der" 2>/dev/null || echo "?")
echo
echo "OCSP load benchmark: $CERTS certificates ($REVOKED % revoked), GET form, $CONNS connections, ${DURATION} s per target,"
echo "wrk $THREADS threads, loopback in a network namespace per target; $cores cores ($cpu); response $size bytes (RSA-2048, responder cert included)"
if [ -n "$SERVER_PIN" ]; then
  echo "every server (and its helpers) on CPU(s) $SERVER_CPUS, the load generator on CPU(s) $LOAD_CPUS (PIN=0: unpinned)"
fi
echo
# Server CPU per request (user + system of the server's processes during the
# load, which on loopback includes delivering the answer to wrk): unlike
# requests/s, it hardly depends on what else the machine runs.
cpu_us() { awk -v t="$(field "$1" server_cpu_ticks)" -v h="$(field "$1" clk_tck)" -v r="$(field "$1" requests)" \
  'BEGIN { if (r > 0 && h > 0) printf "%.1f", t / h * 1e6 / r; else print "-" }'; }
cpu_ceiling=$(cpu_us "$res_c")
cpu_ratio() { awk -v a="$1" -v c="$cpu_ceiling" 'BEGIN { if (c > 0 && a != "-") printf "%.3f", a / c; else print "-" }'; }
printf "%-34s %12s %10s %10s %12s %10s %14s %10s\n" "target" "requests/s" "mean ms" "p99 ms" "vs nginx" "errors" \
  "CPU us/req" "vs nginx"
for row in "(a) hpki-ca ocsp responder|$res_a" "(d) 2 replicas behind nginx cache|$res_d" \
    "(b) openssl ocsp -multi 2|$res_b" "(c) nginx fixed response (ceiling)|$res_c"; do
  name=${row%%|*}; res=${row#*|}
  if [ -z "$res" ]; then printf "%-34s %12s\n" "$name" "FAILED"; continue; fi
  r=$(rps "$res")
  errs=$(( $(field "$res" status_errors) + $(field "$res" socket_errors) ))
  c=$(cpu_us "$res")
  printf "%-34s %12s %10s %10s %12s %10s %14s %10s\n" "$name" "$r" "$(ms "$res" mean_us)" "$(ms "$res" p99_us)" \
    "$(ratio "$r")" "$errs" "$c" "$(cpu_ratio "$c")"
done
if [ -n "$h2_c" ]; then
  echo
  echo "the same targets under h2load --h1 ($CONNS connections, $THREADS threads, the same paths):"
  ceiling=$(rps "$h2_c"); cpu_ceiling=$(cpu_us "$h2_c")
  for row in "(a) hpki-ca ocsp responder|$h2_a" "(d) 2 replicas behind nginx cache|$h2_d" \
      "(c) nginx fixed response (ceiling)|$h2_c"; do
    name=${row%%|*}; res=${row#*|}
    if [ -z "$res" ]; then printf "%-34s %12s\n" "$name" "FAILED"; continue; fi
    r=$(rps "$res")
    c=$(cpu_us "$res")
    printf "%-34s %12s %10s %10s %12s %10s %14s %10s\n" "$name" "$r" "$(ms "$res" mean_us)" "$(ms "$res" p99_us)" \
      "$(ratio "$r")" "$(field "$res" socket_errors)" "$c" "$(cpu_ratio "$c")"
  done
  ceiling=$(rps "$res_c"); cpu_ceiling=$(cpu_us "$res_c")
fi
if [ -n "$res_a" ] && [ -n "$res_b" ]; then
  awk -v a="$(rps "$res_a")" -v b="$(rps "$res_b")" 'BEGIN { if (b > 0) printf "(a) / (b) = %.1fx\n", a / b }'
fi
echo
if [ -n "$mem" ]; then
  echo "memory: $(field "$mem" rss_with_${MEMORY_COUNT}_cached_mib) MiB resident with $MEMORY_COUNT cached responses" \
       "($(field "$mem" per_response_bytes) bytes per cached response; $(field "$mem" rss_with_1000_signed_mib) MiB with 1,000)"
else
  echo "memory: measurement failed"
fi
if [ -n "$prop" ]; then
  echo "propagation (RevokeCertificate returned -> first 'revoked' answer, $ROUNDS rounds):" \
       "median $(field "$prop" after_return_ms_median) ms, p90 $(field "$prop" after_return_ms_p90) ms, max $(field "$prop" after_return_ms_max) ms;" \
       "from the call: median $(field "$prop" from_call_ms_median) ms, max $(field "$prop" from_call_ms_max) ms"
else
  echo "propagation: measurement failed"
fi
if [ -n "$cold" ]; then
  echo "cold path (cache miss, a live RSA-2048 signature per request, $CONNS connections, live-signing buckets raised):" \
       "$(field "$cold" cold_answers_per_s) answers/s, p99 $(field "$cold" cold_p99_ms) ms;" \
       "raw SoftHSM signing on $CONNS threads in the same $(field "$cold" rounds) interleaved rounds: $(field "$cold" raw_signs_per_s) signatures/s;" \
       "ratio $(field "$cold" ratio)x (target >= 0.9)$( [ "$(field "$cold" exhausted)" = 1 ] && echo ' [ran out of fresh serials: too low]')"
else
  echo "cold path: measurement failed"
fi
