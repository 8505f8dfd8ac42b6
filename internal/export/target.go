package export

import (
	"strings"

	"github.com/tracerd/tracerd/internal/httpparse"
)

// RedactedValue replaces each query value in the outputs: the value
// OpenTelemetry's semantic conventions use for url.query and url.full
// redaction.
const RedactedValue = "REDACTED"

// Query strings carry secrets (?password=, ?token=, signed URLs' sig=)
// and land in files and collectors with wider access than the traced
// service. So every output shows a target as its path and its query with
// each value replaced by REDACTED, keys kept ("?password=REDACTED&page=
// REDACTED"): the same shape whether the target came from the socket's
// bytes or from Go's net/http. The conventions ask for the values of
// known signature keys to be redacted; tracerd cannot tell a secret from
// a page number, so it redacts them all unless the operator keeps them
// (JSONOptions.KeepQueryValues, OTLPOptions.KeepQueryValues).
//
// Redaction rules, per '&'-separated item of the query:
//   - "key=value" → "key=REDACTED";
//   - "key=" stays (there is nothing to hide);
//   - an item without '=' is REDACTED whole ("?<token>" is a value);
//   - empty items stay, so the number of items shows.
//
// The fragment is dropped, and an absolute-form target keeps only its
// path (httpparse.SplitTarget): userinfo never reaches an output.

// pieceWriter appends a piece of an output string: raw, or escaped for
// JSON. Targets are written piece by piece so that the JSON lines get
// them redacted without building a string per request.
type pieceWriter func(b []byte, s string) []byte

func appendRaw(b []byte, s string) []byte { return append(b, s...) }

// appendTarget appends target as the outputs show it: path, then '?'
// and the (redacted) query when there is one.
func appendTarget(b []byte, target string, keepValues bool, add pieceWriter) []byte {
	path, query, hasQuery := httpparse.SplitTarget(target)
	b = add(b, path)
	if !hasQuery {
		return b
	}
	b = add(b, "?")
	return appendQuery(b, query, keepValues, add)
}

// appendQuery appends a query (without '?'), its values redacted unless
// keepValues.
func appendQuery(b []byte, query string, keepValues bool, add pieceWriter) []byte {
	if keepValues {
		return add(b, query)
	}
	for first := true; ; first = false {
		item, rest, more := strings.Cut(query, "&")
		if !first {
			b = add(b, "&")
		}
		key, value, hasEq := strings.Cut(item, "=")
		switch {
		case item == "":
		case !hasEq:
			b = add(b, RedactedValue)
		case value == "":
			b = add(b, item)
		default:
			b = add(b, key)
			b = add(b, "="+RedactedValue)
		}
		if !more {
			return b
		}
		query = rest
	}
}

// ShownTarget is target as the outputs show it (see appendTarget);
// target itself when that is already the case, without allocating.
func ShownTarget(target string, keepValues bool) string {
	if strings.HasPrefix(target, "/") && !strings.ContainsAny(target, "?#") {
		return target
	}
	return string(appendTarget(make([]byte, 0, redactedLen(target)), target, keepValues, appendRaw))
}

// ShownQuery is the target's query as the outputs show it (url.query:
// no '?'), and whether the target has one.
func ShownQuery(target string, keepValues bool) (string, bool) {
	_, query, ok := httpparse.SplitTarget(target)
	if !ok || query == "" || keepValues {
		return query, ok
	}
	return string(appendQuery(make([]byte, 0, redactedLen(query)), query, false, appendRaw)), true
}

// redactedLen bounds the length of s with its query values redacted.
func redactedLen(s string) int {
	return len(s) + len(RedactedValue)*(1+strings.Count(s, "&"))
}
