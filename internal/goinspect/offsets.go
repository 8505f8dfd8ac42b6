package goinspect

import (
	"debug/dwarf"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
)

type dwarfData = *dwarf.Data

// Offsets are the struct field offsets (bytes, amd64) the BPF programs need
// to read Go data. They come from the binary's DWARF when present
// (Binary.OffsetsFrom == "dwarf"), else from offsetsTable by Go minor
// version ("table").
//
// Layouts that do not depend on the Go version (amd64):
//   - a string is a header {ptr *byte; len int}: StringPtr (0), StringLen (8);
//   - a non-empty interface is {tab *itab; data unsafe.Pointer}: IfaceTab (0),
//     IfaceData (8);
//   - the current g is in R14 in Go code (ABIInternal), and at *(fsbase-8)
//     from a thread's TLS at syscalls.
//
// Arguments of net/http.serverHandler.ServeHTTP at its entry probe
// (ABIInternal, Go ≥ 1.17 on amd64; integer registers are assigned in the
// order RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11, one per word of each
// argument in order):
//
//	func (sh serverHandler) ServeHTTP(rw ResponseWriter, req *Request)
//	RAX = sh.srv (*http.Server; serverHandler is struct{srv *Server})
//	RBX = rw's itab, RCX = rw's data word
//	RDI = req (*http.Request)
//
// This was checked by disassembly for every Go version tested (see
// TestServeHTTPABI): the morestack spill block stores exactly RAX, RBX,
// RCX, RDI to the argument slots 8, 16, 24, 32(SP), and the body reads
// req.Method and req.RequestURI through RDI at RequestMethod(+8) and
// RequestRequestURI(+8).
//
// Paths the BPF side follows:
//   - method: *(RDI + RequestMethod) is the string header.
//   - path: u = *(RDI + RequestURL) (*url.URL); *(u + URLPath) string
//     header (URLRawQuery for the query); RequestRequestURI is the target
//     as received on an HTTP/1 request line.
//   - status: the data word RCX is saved at the entry (in the call's
//     event) and read at the exit, whose probe's cookie says which
//     ResponseWriter the call has by where the exit lies (not by
//     ProtoMajor: h2c's "PRI *" request is HTTP/2.0 on a *response, and
//     golang.org/x/net/http2 has a responseWriter of its own). An exit
//     in net/http.(*conn).serve: RCX is a *net/http.response, status at
//     *(int*)(RCX + ResponseStatus). At (*http2responseWriter).handlerDone's
//     entry: RCX is a *net/http.http2responseWriter, rws = *(RCX +
//     HTTP2RWState) (still set there), status at *(rws +
//     HTTP2RWStateStatus). A status of 0 there means the handler never
//     called WriteHeader/Write: net/http then sends 200, unless an HTTP/1
//     handler hijacked the connection (HijackLayout, DWARF only).
type Offsets struct {
	GGoid uint64 // runtime.g.goid (uint64)

	// HTTP is true when the net/http and net/url fields below are valid
	// (from DWARF they are only present if the binary links the net/http
	// server).
	HTTP              bool
	RequestMethod     uint64 // net/http.Request.Method (string)
	RequestURL        uint64 // net/http.Request.URL (*url.URL)
	RequestProtoMajor uint64 // net/http.Request.ProtoMajor (int): 1 or 2
	RequestHost       uint64 // net/http.Request.Host (string)
	RequestRequestURI uint64 // net/http.Request.RequestURI (string)
	RequestRemoteAddr uint64 // net/http.Request.RemoteAddr (string, the client's "ip:port")
	URLPath           uint64 // net/url.URL.Path (string)
	URLRawQuery       uint64 // net/url.URL.RawQuery (string)
	ResponseStatus    uint64 // net/http.response.status (int), rw data word for HTTP/1

	// HTTP2 is true when the bundled HTTP/2 server's fields are valid.
	HTTP2              bool
	HTTP2RWState       uint64 // net/http.http2responseWriter.rws (*http2responseWriterState)
	HTTP2RWStateStatus uint64 // net/http.http2responseWriterState.status (int)
}

// Version-independent layouts (amd64), see Offsets.
const (
	StringPtr = 0
	StringLen = 8
	IfaceTab  = 0
	IfaceData = 8
)

type dwarfField struct {
	typ, field string
	dst        func(*Offsets) *uint64
	group      int // 0 runtime (required), 1 HTTP, 2 HTTP2
}

var dwarfFields = []dwarfField{
	{"runtime.g", "goid", func(o *Offsets) *uint64 { return &o.GGoid }, 0},
	{"net/http.Request", "Method", func(o *Offsets) *uint64 { return &o.RequestMethod }, 1},
	{"net/http.Request", "URL", func(o *Offsets) *uint64 { return &o.RequestURL }, 1},
	{"net/http.Request", "ProtoMajor", func(o *Offsets) *uint64 { return &o.RequestProtoMajor }, 1},
	{"net/http.Request", "Host", func(o *Offsets) *uint64 { return &o.RequestHost }, 1},
	{"net/http.Request", "RequestURI", func(o *Offsets) *uint64 { return &o.RequestRequestURI }, 1},
	{"net/http.Request", "RemoteAddr", func(o *Offsets) *uint64 { return &o.RequestRemoteAddr }, 1},
	{"net/url.URL", "Path", func(o *Offsets) *uint64 { return &o.URLPath }, 1},
	{"net/url.URL", "RawQuery", func(o *Offsets) *uint64 { return &o.URLRawQuery }, 1},
	{"net/http.response", "status", func(o *Offsets) *uint64 { return &o.ResponseStatus }, 1},
	{"net/http.http2responseWriter", "rws", func(o *Offsets) *uint64 { return &o.HTTP2RWState }, 2},
	{"net/http.http2responseWriterState", "status", func(o *Offsets) *uint64 { return &o.HTTP2RWStateStatus }, 2},
}

// dwarfMember is a struct member: its offset and the DWARF offset of its
// type (to tell an embedded pointer from an embedded struct).
type dwarfMember struct {
	off uint64
	typ dwarf.Offset
}

// dwarfStructFields reads the members of the named struct types.
// It walks only the top level of each compile unit, skipping the children
// of everything but the wanted structs. bud bounds its memory and time
// (nil: none, for the tables generated from trusted builds).
func dwarfStructFields(d *dwarf.Data, want map[string]bool, bud *budget) (map[string]map[string]dwarfMember, error) {
	out := make(map[string]map[string]dwarfMember)
	w := &dwarfWalker{r: d.Reader(), bud: bud}
	for len(out) < len(want) {
		e, err := w.next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue // descend into the unit
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || !want[name] || out[name] != nil || !e.Children {
			if e.Children {
				if err := w.skipChildren(); err != nil {
					return nil, err
				}
			}
			continue
		}
		fields := make(map[string]dwarfMember)
		for {
			m, err := w.next()
			if err != nil {
				return nil, err
			}
			if m == nil || m.Tag == 0 {
				break
			}
			if m.Tag == dwarf.TagMember {
				fname, _ := m.Val(dwarf.AttrName).(string)
				if loc, ok := m.Val(dwarf.AttrDataMemberLoc).(int64); ok && fname != "" {
					typ, _ := m.Val(dwarf.AttrType).(dwarf.Offset)
					fields[fname] = dwarfMember{off: uint64(loc), typ: typ}
				}
			}
			if m.Children {
				if err := w.skipChildren(); err != nil {
					return nil, err
				}
			}
		}
		out[name] = fields
	}
	return out, nil
}

// dwarfWalker reads DWARF entries one at a time, charging each to the
// budget: the entry, its fields, and the strings and blocks copied into
// them (a string attribute is a copy of .debug_str from its offset to the
// next NUL, so entries crafted to share one long string would otherwise
// cost memory quadratic in its size). It skips children iteratively:
// dwarf.Reader.SkipChildren recurses once per nesting level, which a
// crafted unit makes deep enough to overflow the stack.
type dwarfWalker struct {
	r   *dwarf.Reader
	bud *budget
}

func (w *dwarfWalker) next() (*dwarf.Entry, error) {
	e, err := w.r.Next()
	if err != nil || e == nil {
		return e, err
	}
	cost := uint64(64 + 48*len(e.Field))
	for _, f := range e.Field {
		switch v := f.Val.(type) {
		case string:
			cost += uint64(len(v))
		case []byte:
			cost += uint64(len(v))
		}
	}
	if err := w.bud.alloc(cost, "reading DWARF"); err != nil {
		return nil, err
	}
	return e, nil
}

// skipChildren skips the children of the entry just read.
func (w *dwarfWalker) skipChildren() error {
	for depth := 1; depth > 0; {
		e, err := w.next()
		if err != nil || e == nil {
			return err
		}
		if e.Tag == 0 {
			depth--
		} else if e.Children {
			depth++
		}
	}
	return nil
}

func offsetsFromDWARF(d *dwarf.Data, bud *budget) (Offsets, error) {
	o, _, err := dwarfOffsets(d, bud)
	return o, err
}

// dwarfMore is what only DWARF gives (the per-version table has not).
type dwarfMore struct {
	// net/http.Request's Pattern (Go 1.23+: the ServeMux route that
	// matched; 0 when absent). Only binaries with DWARF get route
	// templates.
	pattern uint64
	tls     *TLSLayout
	// bufio.Reader's layout: DWARF's when it has the type (nil when its
	// fields are not all there), else nil: the caller falls back.
	bufio     *BufioLayout
	bufioSeen bool // DWARF has bufio.Reader
	// The Request's fields the client reads, when Offsets has no HTTP
	// (no server in the binary): nil when absent too.
	client *HTTPClientLayout
	hijack *HijackLayout
}

// HijackLayout: where an HTTP/1 response's connection says it was
// hijacked (net/http.response.conn, then net/http.conn.hijackedv).
type HijackLayout struct {
	ResponseConn  uint64 // net/http.response.conn (*conn)
	ConnHijackedv uint64 // net/http.conn.hijackedv (bool)
}

const (
	dwarfResponse = "net/http.response"
	dwarfConn     = "net/http.conn"
)

// hijackLayoutOf reads HijackLayout from DWARF's types (nil when a field
// is missing, or hijackedv lies at 0, where the BPF side reads "unknown";
// it never has: conn begins with its server).
func hijackLayoutOf(types map[string]map[string]dwarfMember) *HijackLayout {
	rc, ok1 := types[dwarfResponse]["conn"]
	hj, ok2 := types[dwarfConn]["hijackedv"]
	if !ok1 || !ok2 || hj.off == 0 {
		return nil
	}
	return &HijackLayout{ResponseConn: rc.off, ConnHijackedv: hj.off}
}

// dwarfOffsets is offsetsFromDWARF, and what only DWARF says.
func dwarfOffsets(d *dwarf.Data, bud *budget) (Offsets, dwarfMore, error) {
	want := map[string]bool{dwarfTLSConn: true, dwarfBufioReader: true, dwarfConn: true}
	for _, f := range dwarfFields {
		want[f.typ] = true
	}
	types, err := dwarfStructFields(d, want, bud)
	if err != nil {
		return Offsets{}, dwarfMore{}, fmt.Errorf("reading DWARF: %w", err)
	}
	o, err := offsetsOf(types)
	if err != nil {
		return o, dwarfMore{}, err
	}
	more := dwarfMore{tls: tlsLayoutOf(types)}
	more.bufio, more.bufioSeen = bufioLayoutOf(types)
	if !o.HTTP {
		more.client = httpClientLayoutOf(types)
		return o, more, nil
	}
	more.pattern = types["net/http.Request"]["Pattern"].off
	more.hijack = hijackLayoutOf(types)
	return o, more, nil
}

func offsetsOf(types map[string]map[string]dwarfMember) (Offsets, error) {
	var o Offsets
	missing := map[int]string{}
	for _, f := range dwarfFields {
		v, ok := types[f.typ][f.field]
		if !ok {
			if _, seen := missing[f.group]; !seen {
				missing[f.group] = f.typ + "." + f.field
			}
			continue
		}
		*f.dst(&o) = v.off
	}
	if m, ok := missing[0]; ok {
		return Offsets{}, fmt.Errorf("DWARF lacks %s", m)
	}
	_, m1 := missing[1]
	_, m2 := missing[2]
	o.HTTP, o.HTTP2 = !m1, !m2
	if !o.HTTP {
		o.RequestMethod, o.RequestURL, o.RequestProtoMajor, o.RequestHost = 0, 0, 0, 0
		o.RequestRequestURI, o.RequestRemoteAddr, o.URLPath, o.URLRawQuery, o.ResponseStatus = 0, 0, 0, 0, 0
	}
	if !o.HTTP2 {
		o.HTTP2RWState, o.HTTP2RWStateStatus = 0, 0
	}
	return o, nil
}

var goVersionRE = regexp.MustCompile(`^go1\.(\d+)(?:\.\d+|rc\d+|beta\d+)?(?:$|[ +-])`)

// goMinor returns N of a "go1.N[.P]" version string ("go1.26.8",
// "go1.22rc1", "go1.21.0 X:boringcrypto"); devel versions are unknown.
func goMinor(v string) (int, bool) {
	m := goVersionRE.FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// tableOffsets returns the table's offsets for the binary's Go version.
func tableOffsets(goVersion string) (Offsets, bool) {
	n, ok := goMinor(goVersion)
	if !ok {
		return Offsets{}, false
	}
	e, ok := offsetsTable[n]
	return e.Offsets, ok
}

// tableRange describes the versions the table covers, for error messages.
func tableRange() string { return keyRange(offsetsTable, "go1.") }

// keyRange says which minor versions a table covers: "table covers
// go1.18-go1.26".
func keyRange[V any](table map[int]V, prefix string) string {
	if len(table) == 0 {
		return "table empty"
	}
	ns := slices.Sorted(maps.Keys(table))
	return fmt.Sprintf("table covers %s%d-%s%d", prefix, ns[0], prefix, ns[len(ns)-1])
}

// tableEntry is one row of offsetsTable.
type tableEntry struct {
	Offsets
	From []string // toolchains whose DWARF produced these values (all agreed)
}
