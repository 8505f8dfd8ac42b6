package goinspect

// The Go HTTP/1 client (net/http's Transport), probed at two entries
// that only a client runs (a server never calls them):
//
//   - HTTPClientWrite, net/http.(*Request).write: a persistConn's
//     writeLoop about to write a request (Request.Write and WriteProxy
//     call it too). The method, URL.Path and URL.RawQuery are read from
//     the Request (the receiver, RAX) at Offsets' RequestMethod,
//     RequestURL, URLPath and URLRawQuery.
//   - HTTPClientReadResponse, net/http.ReadResponse(r *bufio.Reader, req
//     *Request): the readLoop, which has peeked at the connection, about
//     to parse a response (once per response: twice after a 1xx). The
//     status line is read from r's buffer (BufioLayout), req (RBX) pairs
//     it with the request written.
const (
	HTTPClientWrite        = "net/http.(*Request).write"
	HTTPClientReadResponse = "net/http.ReadResponse"
)

const dwarfBufioReader = "bufio.Reader"

// BufioLayout holds the offsets in bufio.Reader of its buffer and
// positions (amd64): the bytes read ahead are buf[r:w].
type BufioLayout struct {
	Buf uint64 // buf ([]byte): its data pointer
	R   uint64 // r (int): the read position
	W   uint64 // w (int): the write position
}

// knownBufioLayout is bufio.Reader's layout in every Go release tracerd
// supports (go1.18 to go1.26: buf []byte, rd io.Reader, r, w int, ...;
// unchanged since Go 1.0): used for binaries whose DWARF is not read.
// The BPF program reads the three words from one 64-byte copy.
var knownBufioLayout = BufioLayout{Buf: 0, R: 40, W: 48}

// bufioLayoutOf reads the layout from DWARF's members: seen says DWARF
// has the type; the layout is nil unless its three fields are there,
// word-aligned, within the first 64 bytes.
func bufioLayoutOf(types map[string]map[string]dwarfMember) (l *BufioLayout, seen bool) {
	rd, ok := types[dwarfBufioReader]
	if !ok {
		return nil, false
	}
	var out BufioLayout
	for name, dst := range map[string]*uint64{"buf": &out.Buf, "r": &out.R, "w": &out.W} {
		m, ok := rd[name]
		if !ok || m.off%8 != 0 || m.off+8 > 64 {
			return nil, true
		}
		*dst = m.off
	}
	if out.W == 0 {
		return nil, true
	}
	return &out, true
}

// HTTPClientLayout is where the client's probe reads a Request's method
// and URL path and query: Offsets' when it has net/http (a server's
// binary, or the per-version table), else DWARF's of the Request and
// URL alone (a binary with net/http's client and no server).
type HTTPClientLayout struct {
	RequestMethod, RequestURL, URLPath, URLRawQuery uint64
}

// httpClientLayoutOf reads the layout from DWARF's members; nil unless
// all four fields are there.
func httpClientLayoutOf(types map[string]map[string]dwarfMember) *HTTPClientLayout {
	req, url := types["net/http.Request"], types["net/url.URL"]
	var l HTTPClientLayout
	for _, f := range []struct {
		of    map[string]dwarfMember
		field string
		dst   *uint64
	}{{req, "Method", &l.RequestMethod}, {req, "URL", &l.RequestURL}, {url, "Path", &l.URLPath}, {url, "RawQuery", &l.URLRawQuery}} {
		m, ok := f.of[f.field]
		if !ok {
			return nil
		}
		*f.dst = m.off
	}
	return &l
}
