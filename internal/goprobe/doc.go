// Package goprobe attaches tracerd's uprobes to Go processes: GC
// stop-the-world pauses, encoding/json and protobuf calls, net/http
// ServeHTTP (whose exit reads the response status; WriteHeader is probed
// only where it cannot), grpc-go, crypto/tls, the net/http client.
// Probes go at a cheap entry instruction and where a call ends: an
// emulated instruction found by disassembly, else its RETs (never
// uretprobes: Go stacks move). It calibrates what a probed
// call's duration is inflated by, and switches off a function whose probes
// fire too often for the process's good.
package goprobe
