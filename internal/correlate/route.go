package correlate

import (
	"strconv"
	"strings"

	"github.com/tracerd/tracerd/internal/httpparse"
)

// Routes group requests in the profile and the summary, so their number
// must stay bounded whatever clients send: every distinct value is a
// map entry and a pprof frame kept for the whole session. A route is,
// best first:
//
//   - the server's own route template (HTTP.Pattern) when known;
//   - the method and the path with its variable segments replaced by
//     placeholders (NormalizePath);
//   - "tcp:PORT" for other protocols.
//
// What normalisation cannot recognise (a slug, a word) still makes a
// route of its own: exporters cap the routes per service on top (see
// export.ProfileOptions).

// Placeholders of the path segments that vary per request.
const (
	PlaceholderID    = "{id}"    // decimal digits
	PlaceholderUUID  = "{uuid}"  // 8-4-4-4-12 hex digits
	PlaceholderHash  = "{hash}"  // ≥ 8 hex digits, at least one a decimal digit
	PlaceholderToken = "{token}" // ≥ 16 characters of base64/base64url mixing letters and digits
)

// minHashLen and minTokenLen: shorter segments are left alone, so that
// words ("deadbeef" has no digit; "v2", "2fa" are short) keep routes
// apart; ids and hashes of that length are already unbounded.
const (
	minHashLen  = 8
	minTokenLen = 16
)

// AppendRoute appends the request's route to b, allocating nothing but
// b's growth (the profile calls it for every request).
func (r *Request) AppendRoute(b []byte) []byte {
	h := r.HTTP
	if h == nil || h.Method == "" {
		b = append(b, "tcp:"...)
		return strconv.AppendUint(b, uint64(r.Conn.Local.Port()), 10)
	}
	b = append(b, routeMethod(h.Method)...)
	b = append(b, ' ')
	if h.Pattern != "" {
		return append(b, patternPath(h.Pattern)...)
	}
	path, _, _ := httpparse.SplitTarget(h.Target)
	return AppendNormalizedPath(b, path)
}

// routeMethod: net/http passes any token as a method, so methods outside
// the registered ones share "_OTHER" (as OpenTelemetry's
// http.request.method does) rather than making a route each.
func routeMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY":
		return m
	}
	return "_OTHER"
}

// patternPath is a net/http pattern ("[METHOD ][HOST]/PATH", Go 1.22)
// without its method: the request's own method is the route's (a GET
// pattern also serves HEAD).
func patternPath(p string) string {
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return strings.TrimLeft(p[i+1:], " \t")
	}
	return p
}

// AppendNormalizedPath appends path with each segment that looks like an
// identifier replaced by its placeholder: "/users/42/orders/9f1c2e3d4b"
// gives "/users/{id}/orders/{hash}". Other segments are kept as they are.
func AppendNormalizedPath(b []byte, path string) []byte {
	for {
		seg, rest, more := strings.Cut(path, "/")
		if p := placeholder(seg); p != "" {
			b = append(b, p...)
		} else {
			b = append(b, seg...)
		}
		if !more {
			return b
		}
		b = append(b, '/')
		path = rest
	}
}

// NormalizePath is AppendNormalizedPath as a string; path itself when no
// segment changes.
func NormalizePath(path string) string {
	for seg := range strings.SplitSeq(path, "/") {
		if placeholder(seg) != "" {
			return string(AppendNormalizedPath(make([]byte, 0, len(path)), path))
		}
	}
	return path
}

// placeholder is the placeholder standing for seg, "" to keep it.
func placeholder(seg string) string {
	var digits, hexLetters, letters int
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hexLetters++
		case 'g' <= c && c <= 'z', 'G' <= c && c <= 'Z':
			letters++
		case c == '-', c == '_', c == '+', c == '=', c == '.', c == '~', c == '%':
			// base64, base64url, JWT and percent-encoding punctuation
		default:
			return "" // not an identifier's alphabet
		}
	}
	n := len(seg)
	switch {
	case n == 0:
		return ""
	case digits == n:
		return PlaceholderID
	case isUUID(seg):
		return PlaceholderUUID
	case n >= minHashLen && digits > 0 && digits+hexLetters == n:
		return PlaceholderHash
	case n >= minTokenLen && digits > 0 && hexLetters+letters > 0:
		return PlaceholderToken
	}
	return ""
}

// isUUID: 8-4-4-4-12 hex digits (any version, either case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHexDigit(c) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
