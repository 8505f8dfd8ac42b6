package goinspect

import (
	"debug/buildinfo"
	"debug/dwarf"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// GRPCModule is the module path of grpc-go.
const GRPCModule = "google.golang.org/grpc"

// Probed grpc-go functions.
const (
	// GRPCHandleStream runs one RPC (unary or streaming) on the stream's
	// own goroutine, from its headers to its status.
	GRPCHandleStream = "google.golang.org/grpc.(*Server).handleStream"
	// The HTTP/2 transport writes the final status with one of these
	// (grpc ≥ 1.69 lower-case, before that the exported name).
	GRPCWriteStatus    = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus"
	GRPCWriteStatusOld = "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"
)

// GRPCLayout says where a grpc-go server keeps an RPC's method name and
// final status (amd64). It depends on the grpc-go version, not on Go's.
//
// Registers at the probes (ABIInternal, checked on the DWARF of every
// version in the table by TestGenerateGRPCTable):
//
//	func (s *Server) handleStream(t transport.ServerTransport, stream *transport.ServerStream)
//	  (grpc < 1.69: stream *transport.Stream, and up to 1.59 a third trInfo)
//	  RAX = s, RBX/RCX = t (interface), RDI = stream
//	func (t *http2Server) writeStatus(s *ServerStream, st *status.Status) error
//	  (grpc < 1.69: WriteStatus(s *Stream, st *status.Status))
//	  RAX = t, RBX = s, RCX = st
//
// Paths the BPF side follows:
//   - method: base = RDI + StreamEmbed, or *(RDI + StreamEmbed) when
//     StreamDeref (1.69–1.76 embed *Stream; from 1.77 Stream by value; before
//     1.69 RDI is the Stream itself, StreamEmbed 0); the method string
//     ("/package.Service/Method") is at base + StreamMethod.
//   - status code: p = *(RCX + StatusProto) (*spb.Status, nil means OK),
//     code = *(int32*)(p + StatusCode).
type GRPCLayout struct {
	StreamDeref  bool
	StreamEmbed  uint64 // transport.ServerStream's embedded Stream (0 before 1.69)
	StreamMethod uint64 // transport.Stream.method (string)
	StatusProto  uint64 // grpc/internal/status.Status.s (*spb.Status)
	StatusCode   uint64 // genproto googleapis/rpc/status.Status.Code (int32)
}

// GRPC describes the grpc-go server linked into a binary.
type GRPC struct {
	GRPCLayout
	Version string // module version from buildinfo, e.g. "v1.70.0" ("" if unknown)
	From    string // "dwarf" or "table"
}

// DWARF type names of the grpc-go structs read.
const (
	dwarfGRPCStream       = "google.golang.org/grpc/internal/transport.Stream"
	dwarfGRPCServerStream = "google.golang.org/grpc/internal/transport.ServerStream"
	dwarfGRPCStatus       = "google.golang.org/grpc/internal/status.Status"
	dwarfRPCStatusProto   = "google.golang.org/genproto/googleapis/rpc/status.Status"
)

// grpcFromDWARF reads the layout from the binary's DWARF.
func grpcFromDWARF(d *dwarf.Data, bud *budget) (GRPCLayout, error) {
	want := map[string]bool{dwarfGRPCStream: true, dwarfGRPCServerStream: true, dwarfGRPCStatus: true, dwarfRPCStatusProto: true}
	types, err := dwarfStructFields(d, want, bud)
	if err != nil {
		return GRPCLayout{}, fmt.Errorf("reading DWARF: %w", err)
	}
	var l GRPCLayout
	method, ok := types[dwarfGRPCStream]["method"]
	if !ok {
		return l, fmt.Errorf("DWARF lacks %s.method", dwarfGRPCStream)
	}
	l.StreamMethod = method.off
	if ss, ok := types[dwarfGRPCServerStream]; ok {
		embed, ok := ss["Stream"]
		if !ok {
			return l, fmt.Errorf("DWARF: %s has no embedded Stream", dwarfGRPCServerStream)
		}
		l.StreamEmbed = embed.off
		// The type's own entry, not d.Type: that resolves the whole type
		// graph recursively, which a crafted chain of types makes
		// overflow the stack.
		r := d.Reader()
		r.Seek(embed.typ)
		typ, err := r.Next()
		if err != nil || typ == nil {
			return l, fmt.Errorf("DWARF: type of %s.Stream at %#x: %v", dwarfGRPCServerStream, embed.typ, err)
		}
		l.StreamDeref = typ.Tag == dwarf.TagPointerType
	}
	s, ok := types[dwarfGRPCStatus]["s"]
	if !ok {
		return l, fmt.Errorf("DWARF lacks %s.s", dwarfGRPCStatus)
	}
	code, ok := types[dwarfRPCStatusProto]["Code"]
	if !ok {
		return l, fmt.Errorf("DWARF lacks %s.Code", dwarfRPCStatusProto)
	}
	l.StatusProto, l.StatusCode = s.off, code.off
	return l, nil
}

// grpcModuleVersion is the grpc-go version a binary was built with.
func grpcModuleVersion(bi *buildinfo.BuildInfo) string {
	if bi == nil {
		return ""
	}
	if bi.Main.Path == GRPCModule {
		return bi.Main.Version
	}
	for _, dep := range bi.Deps {
		if dep.Path != GRPCModule {
			continue
		}
		if dep.Replace != nil && dep.Replace.Version != "" {
			return dep.Replace.Version
		}
		return dep.Version
	}
	return ""
}

var grpcVersionRE = regexp.MustCompile(`^v1\.(\d+)\.`)

// grpcMinor returns N of "v1.N.P[-pre]".
func grpcMinor(v string) (int, bool) {
	m := grpcVersionRE.FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// grpcTableEntry is one row of grpcTable.
type grpcTableEntry struct {
	GRPCLayout
	From []string // grpc-go versions whose DWARF produced these values (all agreed)
}

func grpcTableRange() string { return keyRange(grpcTable, "v1.") }

// errNoGRPC: the binary does not link a grpc-go server.
var errNoGRPC = errors.New("no grpc-go server linked in")

// inspectGRPC fills b.GRPC, or b.GRPCErr with the reason it stays nil
// (errNoGRPC when there is no grpc-go server at all).
func (b *Binary) inspectGRPC(d *dwarf.Data, version string, bud *budget) {
	if !b.has(GRPCHandleStream) {
		b.GRPCErr = errNoGRPC
		return
	}
	if d != nil {
		l, err := grpcFromDWARF(d, bud)
		if err == nil {
			b.GRPC = &GRPC{GRPCLayout: l, Version: version, From: "dwarf"}
			return
		}
		b.GRPCErr = err
	}
	n, ok := grpcMinor(version)
	if e, found := grpcTable[n]; ok && found {
		b.GRPC, b.GRPCErr = &GRPC{GRPCLayout: e.GRPCLayout, Version: version, From: "table"}, nil
		return
	}
	if version == "" {
		version = "unknown (not in buildinfo)"
	}
	why := "no DWARF"
	if b.GRPCErr != nil {
		why = b.GRPCErr.Error()
	}
	b.GRPCErr = fmt.Errorf("grpc-go %s: %s and version not in the table (%s)", version, why, grpcTableRange())
}
