package httpparse

import "strings"

// SplitTarget splits a request-target (RFC 9112 §3.2) into its path and
// query, so that every output shows the same parts whatever form the
// client used:
//
//   - origin-form "/a/b?x=1": path "/a/b", query "x=1";
//   - absolute-form "http://host:8080/a?x=1" (what proxies get): the
//     scheme and authority, userinfo included, are not part of the path
//     (net/http's URL.Path drops them too); no path at all is "/";
//   - authority-form ("host:443", CONNECT) and asterisk-form ("*",
//     OPTIONS): the whole target is the path, with no query.
//
// A fragment ("#…", which clients do not send but bytes may hold) is
// part of neither. The results are substrings of target: no allocation.
func SplitTarget(target string) (path, query string, hasQuery bool) {
	rest := target
	if !strings.HasPrefix(rest, "/") {
		scheme, afterScheme, ok := strings.Cut(rest, "://")
		if !ok || scheme == "" || strings.ContainsAny(scheme, "/?#") {
			return target, "", false // authority-form, asterisk-form or garbage
		}
		i := strings.IndexAny(afterScheme, "/?#")
		if i < 0 {
			return "/", "", false
		}
		rest = afterScheme[i:]
	}
	rest, _, _ = strings.Cut(rest, "#")
	path, query, hasQuery = strings.Cut(rest, "?")
	if path == "" {
		path = "/" // "http://host?x=1"
	}
	return path, query, hasQuery
}
