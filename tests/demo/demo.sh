#!/usr/bin/env bash
# tracerd's demo: traces a bundled Go HTTP service under load for 10 s and
# shows per-request kernel breakdowns (summary, JSON lines, pprof).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: tracerd loads BPF programs: run as root (sudo make demo)" >&2
	exit 1
fi
out=bin/demo
mkdir -p "$out"
go build -o "$out/server" ./tests/demo/server
port=18080
"$out/server" -addr "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null; kill $tracer 2>/dev/null || true' EXIT

bin/tracerd check | tail -1
bin/tracerd snapshot --port "$port" --duration 10s --top 5 \
	-o "$out/cut.pb.gz" --json "$out/requests.jsonl" 2>"$out/tracerd.err" >"$out/summary.txt" &
tracer=$!
for _ in $(seq 100); do grep -q "tracerd: tracing" "$out/tracerd.err" && break; sleep 0.1; done
grep "tracerd: tracing" "$out/tracerd.err"

"$out/server" -load "http://127.0.0.1:$port" -duration 8s
wait $tracer
tracer=
cat "$out/summary.txt"
grep -v "tracerd: tracing" "$out/tracerd.err" || true
echo
echo "one request as JSON ($out/requests.jsonl):"
grep -m1 '"/slow"' "$out/requests.jsonl" || head -1 "$out/requests.jsonl"
echo
echo "pprof (go tool pprof -http=: $out/cut.pb.gz for the flame graph):"
go tool pprof -top "$out/cut.pb.gz" 2>/dev/null | head -16
