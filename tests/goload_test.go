//go:build e2e

package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tracerd/tracerd/internal/export"
)

// Load of TestGoUnderLoad: a small JSON answer (4 probe hits each:
// ServeHTTP's entry and exit, which reads the status, json.Marshal's
// entry and exit)
// at loadRate for loadFor, far past the probes' former rate bound (2000
// calls/s) and under the default one.
const (
	loadRate  = 10_000
	loadFor   = 12 * time.Second
	loadConns = 64
	loadPath  = "/json?n=1&load=1"
)

// TestGoUnderLoad: the Go test server answering 10,000 requests/s for 12 s
// keeps its Go phases to the end. In the load's last seconds, requests
// with known truth go alongside it: JSON and protobuf serialization timed
// by the handler, GC pauses (the server runs with GOGC=off: only those)
// timed by the runtime's own clock, a handler sleeping a known time, a
// gRPC call with its handler's marshal timed. Each must come out right,
// and the load's own records of those seconds must carry serialize,
// gc_stw and their ServeHTTP and json.Marshal spans.
func TestGoUnderLoad(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]), "-grpc", "127.0.0.1:0")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID), "--log-level", "info")
	base := "http://" + srv.Addr

	var answered, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	defer cancel()
	start := time.Now()
	var load sync.WaitGroup
	for i := 0; i < loadConns; i++ {
		load.Add(1)
		go func(offset time.Duration) {
			defer load.Done()
			paceLoad(ctx, base+loadPath, loadConns*time.Second/loadRate, offset, &answered, &failed)
		}(time.Duration(i) * time.Second / loadRate)
	}

	// The truth, in the last seconds.
	time.Sleep(loadFor - 4*time.Second)
	truthStart := time.Now()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	var jsonTruth, protoTruth, gcTruth, gcCycles []int64
	var sleepElapsed []time.Duration
	for i := 0; i < 2; i++ {
		resp, _ := get(t, client, base+"/gc?n=2")
		gcTruth = append(gcTruth, headerNs(t, resp, "X-GC-Pause-Ns"))
		gcCycles = append(gcCycles, headerNs(t, resp, "X-GC-Cycles"))
		resp, _ = get(t, client, base+"/json?n=20000")
		jsonTruth = append(jsonTruth, headerNs(t, resp, "X-Serialize-Ns"))
		resp, _ = get(t, client, base+"/proto?n=20000")
		protoTruth = append(protoTruth, headerNs(t, resp, "X-Serialize-Ns"))
		t0 := time.Now()
		get(t, client, base+"/sleep?n=50")
		sleepElapsed = append(sleepElapsed, time.Since(t0))
	}
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := &grpcCall{method: "/tracerd.test.Lab/Sleep", args: map[string]any{"ms": 30, "items": 20000}, minTime: 30 * time.Millisecond}
	invokeGRPC(t, conn, rpc)
	if time.Since(start) > loadFor {
		t.Fatalf("the truth's requests took until %s, past the load (%s)", time.Since(start).Round(time.Millisecond), loadFor)
	}
	load.Wait()
	elapsed := time.Since(start)
	time.Sleep(time.Second) // the last records
	recs := tr.Stop(t)

	rate := float64(answered.Load()) / elapsed.Seconds()
	t.Logf("load: %d answered (%.0f/s), %d failed", answered.Load(), rate, failed.Load())
	if rate < 0.95*loadRate || failed.Load() > 0 {
		t.Fatalf("the load reached %.0f requests/s (%d failed), want %d", rate, failed.Load(), loadRate)
	}
	if strings.Contains(tr.stderr.String(), "switched off") {
		t.Errorf("Go probes switched off under load:\n%s", tr.stderr)
	}

	// The load's records of its last three seconds.
	from, to := start.Add(loadFor-3*time.Second).UnixNano(), start.Add(loadFor).UnixNano()
	var n, withSerialize, withGC, withServe, withMarshal int
	var jsonRecs, protoRecs, gcRecs, sleepRecs, grpcRecs []export.JSONRecord
	for _, r := range recs {
		switch {
		case r.RPC != nil && r.StartUnixNano >= truthStart.UnixNano():
			grpcRecs = append(grpcRecs, r)
		case r.HTTP == nil:
		case r.HTTP.Target == "/json?n=REDACTED&load=REDACTED":
			if r.StartUnixNano < from || r.StartUnixNano >= to {
				continue
			}
			n++
			if _, ok := r.Phases["serialize"]; ok {
				withSerialize++
			}
			if _, ok := r.Phases["gc_stw"]; ok {
				withGC++
			}
			if hasSpan(r, "net/http.serverHandler.ServeHTTP") {
				withServe++
			}
			if hasSpan(r, "encoding/json.Marshal") {
				withMarshal++
			}
		case r.StartUnixNano < truthStart.UnixNano():
		case strings.HasPrefix(r.HTTP.Target, "/json"):
			jsonRecs = append(jsonRecs, r)
		case strings.HasPrefix(r.HTTP.Target, "/proto"):
			protoRecs = append(protoRecs, r)
		case strings.HasPrefix(r.HTTP.Target, "/gc"):
			gcRecs = append(gcRecs, r)
		case strings.HasPrefix(r.HTTP.Target, "/sleep"):
			sleepRecs = append(sleepRecs, r)
		}
	}
	t.Logf("load records of the last 3 s: %d; with serialize %d, gc_stw %d, ServeHTTP %d, json.Marshal %d", n, withSerialize, withGC, withServe, withMarshal)
	if want := 3 * loadRate * 9 / 10; n < want {
		t.Errorf("%d load records in the last 3 s, want ≥ %d", n, want)
	}
	// Every record has its measurements: a request that raced the
	// probes' own events (its ServeHTTP seen in the next record's window)
	// is rare, not the rule.
	for what, have := range map[string]int{"serialize": withSerialize, "gc_stw": withGC, "ServeHTTP span": withServe, "json.Marshal span": withMarshal} {
		if have < n*99/100 {
			t.Errorf("%s in %d of %d load records of the last 3 s", what, have, n)
		}
	}

	if len(jsonRecs) != 2 || len(protoRecs) != 2 || len(gcRecs) != 2 || len(sleepRecs) != 2 {
		t.Fatalf("truth records: %d json, %d proto, %d gc, %d sleep; want 2 each", len(jsonRecs), len(protoRecs), len(gcRecs), len(sleepRecs))
	}
	sortByStart(jsonRecs, protoRecs, gcRecs, sleepRecs)
	for i := range 2 {
		withinPct(t, fmt.Sprintf("json %d serialize", i), phase(t, jsonRecs[i], "serialize"), jsonTruth[i], 5, time.Millisecond)
		withinPct(t, fmt.Sprintf("proto %d serialize", i), phase(t, protoRecs[i], "serialize"), protoTruth[i], 5, time.Millisecond)
		// ±10 %, floor 25 µs a pause (see TestGoAwareness).
		floor := time.Duration(gcCycles[i]) * 2 * 25 * time.Microsecond
		withinPct(t, fmt.Sprintf("gc %d gc_stw (%d cycles)", i, gcCycles[i]), phase(t, gcRecs[i], "gc_stw"), gcTruth[i], 10, floor)
		var serve int64
		for _, s := range sleepRecs[i].Spans {
			if s.Name == "net/http.serverHandler.ServeHTTP" {
				serve = s.DurationNs
			}
		}
		if d := time.Duration(serve); d < 50*time.Millisecond || d > sleepElapsed[i] {
			t.Errorf("sleep %d: ServeHTTP span %s, want between the handler's 50ms sleep and the client's %s", i, d, sleepElapsed[i])
		}
	}
	if i := matchGRPCRecord(grpcRecs, map[int]bool{}, rpc); i < 0 {
		t.Errorf("gRPC %s %v (%s): no record matches among %d", rpc.method, rpc.args, rpc.elapsed, len(grpcRecs))
	} else {
		checkGRPCSerialize(t, grpcRecs[i], rpc.serializeNs)
	}
}

// paceLoad asks url every interval (from offset on) on one keep-alive
// connection until ctx ends; a late answer delays the next request.
func paceLoad(ctx context.Context, url string, interval, offset time.Duration, answered, failed *atomic.Int64) {
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	next := time.Now().Add(offset)
	for {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		if ctx.Err() != nil {
			return
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				failed.Add(1)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			answered.Add(1)
		} else {
			failed.Add(1)
		}
	}
}

func sortByStart(sets ...[]export.JSONRecord) {
	for _, rs := range sets {
		for i := 1; i < len(rs); i++ {
			for j := i; j > 0 && rs[j].StartUnixNano < rs[j-1].StartUnixNano; j-- {
				rs[j], rs[j-1] = rs[j-1], rs[j]
			}
		}
	}
}
