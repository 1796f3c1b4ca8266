#!/usr/bin/env bash
# Reproducible benchmark, loopback only. Builds in release mode, then for
# each concurrency starts a fresh relay (own data dir) routed to a sink
# run by the load tool, submits N messages of SIZE bytes (RSA-2048 DKIM
# signing, durable before 250, STARTTLS + AUTH, pipelining) and prints
#   - accepted msg/s and end-of-DATA→250 latency p50/p99,
#   - end-to-end msg/s (first submission → last delivery at the sink),
#   - the relay's fsyncs for the run (group commit: compare with N),
#   - bytes the relay wrote to disk per message (/proc/<pid>/io
#     write_bytes before and after the run), and that as a multiple of SIZE.
# Finally it fills a relay with FILL messages that cannot be delivered and
# prints its resident memory.
#
#   scripts/bench.sh                     # N=5000 SIZE=40960 C="1 10 50" FILL=10000
#   N=2000 C=50 FILL=0 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SIZE=${SIZE:-40960}
C=${C:-"1 10 50"}
FILL=${FILL:-10000}

cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/herald
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SMTP=$(free_port)
SINK=$(free_port)
HASH=$(printf 'bench-password' | "$BIN" passwd)

config() { # $1 = route port
  cat > "$work/relay.toml" <<TOML
[server]
hostname = "relay.bench"
data_dir = "data"
[tls]
cert = "cert.pem"
key = "key.pem"
[[listener]]
address = "127.0.0.1:$SMTP"
tls = "starttls"
[[user]]
name = "bench"
password_hash = "$HASH"
[limits]
max_connections = 1000
# Every lookup stays on loopback; the static route needs none, and the
# DMARC lookup of the unverified path is off (it is cached in production).
[dns]
nameservers = ["127.0.0.1:9"]
timeout_secs = 1
[identity]
domain = "relay.bench"
bounce_domain = "bounces.relay.bench"
rewrite_from = false
[[route]]
domain = "*"
host = "127.0.0.1"
port = $1
tls = "disabled"
[queue]
retry_schedule = ["1h"]
[log]
level = "warn,herald::server=info"
TOML
}

start_relay() {
  rm -rf "$work/data"
  ${ENVPRE:-} "$BIN" serve --config "$work/relay.toml" 2>"$work/relay.log" &
  pid=$!
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $SMTP), 0.2)" 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "relay did not start:"; cat "$work/relay.log"; exit 1
}

stop_relay() {
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  grep -o 'fsyncs=[0-9]*' "$work/relay.log" | tail -1 | sed 's/^/  relay: /'
}

written() { awk '/^write_bytes/ {print $2}' "/proc/$pid/io"; }

config "$SINK"
for c in $C; do
  start_relay
  before=$(written)
  "$BIN" bench e2e --addr "127.0.0.1:$SMTP" --cert "$work/cert.pem" --user bench --password bench-password \
    -n "$N" -c "$c" --size "$SIZE" --sink "127.0.0.1:$SINK"
  after=$(written)
  awk -v b="$before" -v a="$after" -v n="$N" -v s="$SIZE" \
    'BEGIN { printf "  relay: %.0f bytes written to disk per message (%.2f x its %d bytes)\n", (a - b) / n, (a - b) / n / s, s }'
  stop_relay
done

if [ "$FILL" -gt 0 ]; then
  config 9   # a closed port: everything stays queued
  start_relay
  "$BIN" bench submit --addr "127.0.0.1:$SMTP" --cert "$work/cert.pem" --user bench --password bench-password \
    -n "$FILL" -c 50 --size "$SIZE" >/dev/null
  sleep 6   # past the relay's periodic malloc_trim (every 5 s): the steady state, not the burst
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  [ -n "${SMAPS:-}" ] && grep -E "^(Rss|Anonymous|Pss_File|Pss_Anon)" "/proc/$pid/smaps_rollup"
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "memory with $FILL messages of $SIZE bytes queued: RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB)"
  stop_relay
fi
