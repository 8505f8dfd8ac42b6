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
	// recent holds strings seen lately, at a slot chosen by their length
	// and two of their bytes: a service's few routes hit it and cost a
	// compare, not the map's hash of every byte and its probe.
	recent [recentSlots]recentString
}

const recentSlots = 64

type recentString struct{ key, s string }

func (in *interner) str(b []byte) string {
	n := len(b)
	if n == 0 {
		return ""
	}
	slot := &in.recent[(uint(n)*131^uint(b[n-1])*31^uint(b[n/2]))%recentSlots]
	if slot.key == string(b) { // no allocation for the compare
		return slot.s
	}
	if s, ok := in.m[string(b)]; ok { // nor for the lookup
		slot.key, slot.s = s, s
		if s != string(b) { // made valid UTF-8: the key differs
			slot.key = string(b)
		}
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
	slot.key, slot.s = key, s
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
