package correlate

import (
	"strings"
	"unicode/utf8"
	"unsafe"
)

// maxInterned bounds the strings an interner keeps: far more than a
// service has methods, peers, patterns or paths in use, few enough that
// unique paths (ids in them) cost a few hundred kB before it starts over.
const maxInterned = 4096

// interner makes strings of the bytes the kernel and the probes copy
// (methods, paths, peers, patterns), once: the same bytes seen again
// give the same string without allocating.
type interner struct {
	m map[string]string
}

func (in *interner) str(b []byte) string {
	if s, ok := in.m[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]string, 64)
	}
	key := string(b)
	s := key
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	in.m[key] = s
	return s
}

// int8s is str of a C char array's first n bytes.
func (in *interner) int8s(b []int8, n uint8) string {
	bs := int8Bytes(b, n)
	if len(bs) == 0 {
		return ""
	}
	return in.str(bs)
}

// int8Bytes is a C char array's first n bytes.
func int8Bytes(b []int8, n uint8) []byte {
	n = min(n, uint8(len(b)))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), n)
}
