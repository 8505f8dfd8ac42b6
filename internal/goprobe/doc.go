// Package goprobe attaches tracerd's uprobes to Go processes: GC
// stop-the-world pauses, encoding/json and protobuf calls, net/http
// ServeHTTP and WriteHeader. Probes go at a cheap entry instruction and at
// every RET (never uretprobes: Go stacks move). It calibrates what a probed
// call's duration is inflated by, and switches off a function whose probes
// fire too often for the process's good.
package goprobe
