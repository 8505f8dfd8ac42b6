//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tracerd/tracerd/internal/export"
)

// grpcCall is one RPC the test makes and what it expects of its record.
type grpcCall struct {
	method  string // full method path
	args    map[string]any
	stream  bool
	minTime time.Duration // the handler's own sleeps: the record cannot be shorter
	code    int           // expected gRPC status code

	elapsed     time.Duration // client-side: the record cannot be longer
	serializeNs int64         // handler-measured proto.Marshal (x-serialize-ns)
	gotCode     int
}

// TestGoGRPC: the calls of a grpc-go server (over one plaintext HTTP/2
// connection, concurrently) each come out as a record of their own with
// the service, method and status code, a duration between the handler's
// own sleeps and the client's elapsed time, and the protobuf work of
// grpc-go's codec in serialize. Builds: two Go versions × stripped or
// not with grpc-go v1.70, and the newest grpc-go (another stream layout).
func TestGoGRPC(t *testing.T) {
	needRoot(t)
	for _, b := range append(append([]goBuild{}, goBuilds...), grpcLatestBuilds...) {
		t.Run(b.name, func(t *testing.T) {
			srv := startGoServer(t, buildGoServer(t, b), "-grpc", "127.0.0.1:0")
			tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
			conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			calls := []*grpcCall{
				{method: "/tracerd.test.Lab/Sleep", args: map[string]any{"ms": 150}, minTime: 150 * time.Millisecond},
				{method: "/tracerd.test.Lab/Sleep", args: map[string]any{"ms": 80, "code": 5}, minTime: 80 * time.Millisecond, code: 5},
				{method: "/tracerd.test.Lab/Sleep", args: map[string]any{"items": 20000}},
				{method: "/tracerd.test.Lab/Count", args: map[string]any{"n": 3, "ms": 40}, stream: true, minTime: 120 * time.Millisecond},
				{method: "/tracerd.test.Lab/Nope", args: map[string]any{}, code: 12},
				{method: "/tracerd.test.Other/Sleep", args: map[string]any{}, code: 12},
			}
			// Connect first, so that every call shares one ready connection.
			if err := conn.Invoke(context.Background(), "/tracerd.test.Lab/Sleep", mustStruct(t, nil), &structpb.Struct{}); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, c := range calls {
				wg.Add(1)
				go func(c *grpcCall) {
					defer wg.Done()
					invokeGRPC(t, conn, c)
				}(c)
			}
			wg.Wait()
			recs := tr.Stop(t)

			var grpcRecs []export.JSONRecord
			for _, r := range recs {
				if r.RPC != nil {
					grpcRecs = append(grpcRecs, r)
				}
			}
			sort.Slice(grpcRecs, func(i, j int) bool { return grpcRecs[i].StartUnixNano < grpcRecs[j].StartUnixNano })
			if len(grpcRecs) != len(calls)+1 {
				for _, r := range grpcRecs {
					t.Logf("%+v %+v %v", *r.RPC, r.HTTP, time.Duration(r.DurationNs))
				}
				t.Fatalf("%d gRPC records, want %d (one per call)", len(grpcRecs), len(calls)+1)
			}
			grpcRecs = grpcRecs[1:] // the connecting call
			used := map[int]bool{}
			// The call with items first: its record is the one whose
			// serialize covers the handler's own marshal; the others then
			// need no serialize condition (a small marshal's span can be
			// stretched by preemption, GOMAXPROCS=1).
			sort.SliceStable(calls, func(i, j int) bool { return calls[i].args["items"] != nil && calls[j].args["items"] == nil })
			for _, c := range calls {
				i := matchGRPCRecord(grpcRecs, used, c)
				if i < 0 {
					t.Errorf("%s %v (code %d, %s): no record matches; records:", c.method, c.args, c.gotCode, c.elapsed)
					for _, r := range grpcRecs {
						j, _ := json.Marshal(r)
						t.Logf("  %s", j)
					}
					continue
				}
				used[i] = true
				r := grpcRecs[i]
				t.Logf("%s %v: record %s/%s status %d, %s (handler ≥ %s, client %s)", c.method, c.args,
					r.RPC.Service, r.RPC.Method, *r.RPC.StatusCode, time.Duration(r.DurationNs), c.minTime, c.elapsed)
				if r.HTTP == nil || r.HTTP.Method != "POST" || r.HTTP.Target != c.method {
					t.Errorf("%s: http %+v, want POST %s", c.method, r.HTTP, c.method)
				}
				if r.EndReason != "stream" || phase(t, r, "app") != r.DurationNs {
					t.Errorf("%s: end_reason %q, app %d of %d", c.method, r.EndReason, r.Phases["app"], r.DurationNs)
				}
				if _, big := c.args["items"]; big {
					checkGRPCSerialize(t, r, c.serializeNs)
				}
			}
		})
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// invokeGRPC makes one call and notes its elapsed time, status and
// serialization truth.
func invokeGRPC(t *testing.T, conn *grpc.ClientConn, c *grpcCall) {
	in, err := structpb.NewStruct(c.args)
	if err != nil {
		t.Error(err)
		return
	}
	start := time.Now()
	var md metadata.MD
	if c.stream {
		s, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, c.method)
		if err == nil {
			err = s.SendMsg(in)
		}
		if err == nil {
			err = s.CloseSend()
		}
		for err == nil {
			err = s.RecvMsg(&structpb.Struct{})
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		c.gotCode = int(status.Code(err))
	} else {
		err = conn.Invoke(context.Background(), c.method, in, &structpb.Struct{}, grpc.Header(&md))
		c.gotCode = int(status.Code(err))
	}
	c.elapsed = time.Since(start)
	if c.gotCode != c.code {
		t.Errorf("%s: status %d (%v), want %d", c.method, c.gotCode, err, c.code)
	}
	if v := md.Get("x-serialize-ns"); len(v) == 1 {
		c.serializeNs, _ = strconv.ParseInt(v[0], 10, 64)
	}
}

// matchGRPCRecord finds the unused record of the call: same service and
// method, same status code, duration within [handler sleeps, client time].
func matchGRPCRecord(recs []export.JSONRecord, used map[int]bool, c *grpcCall) int {
	svc, method, _ := strings.Cut(strings.TrimPrefix(c.method, "/"), "/")
	for i, r := range recs {
		d := time.Duration(r.DurationNs)
		if used[i] || r.RPC.System != "grpc" || r.RPC.Service != svc || r.RPC.Method != method ||
			r.RPC.StatusCode == nil || *r.RPC.StatusCode != c.code || d < c.minTime || d > c.elapsed {
			continue
		}
		if _, big := c.args["items"]; big && r.Phases["serialize"] < c.serializeNs*9/10 {
			continue // the two OK Sleep calls: the one with items serializes
		}
		return i
	}
	return -1
}

// checkGRPCSerialize: the handler's own proto.Marshal is one span (its
// timing the truth, ±5 %), grpc-go's codec marshalling the answer again
// (MarshalOptions.MarshalAppend) another, and serialize covers both; the
// codec's decoding of the request, at the call's start, is a
// proto.Unmarshal span (the first calls a stream's record lost when the
// correlator pruned them before the stream's end).
func checkGRPCSerialize(t *testing.T, r export.JSONRecord, truth int64) {
	t.Helper()
	var marshals []int64
	for _, s := range r.Spans {
		if s.Name == "google.golang.org/protobuf/proto.Marshal" {
			marshals = append(marshals, s.DurationNs)
		}
	}
	if !hasSpan(r, "google.golang.org/protobuf/proto.Unmarshal") {
		t.Errorf("no proto.Unmarshal span (the request's): %+v", r.Spans)
	}
	if len(marshals) != 2 {
		t.Errorf("proto.Marshal spans %v, want 2 (the handler's, grpc-go's codec's): %+v", marshals, r.Spans)
		return
	}
	withinPct(t, "gRPC handler's proto.Marshal span", marshals[0], truth, 5, time.Millisecond)
	if ser := phase(t, r, "serialize"); ser < marshals[0]+marshals[1] {
		t.Errorf("serialize %s < the two marshals %s", time.Duration(ser), time.Duration(marshals[0]+marshals[1]))
	}
	if !hasSpan(r, "google.golang.org/grpc.(*Server).handleStream") {
		t.Errorf("no handleStream span: %+v", r.Spans)
	}
}
