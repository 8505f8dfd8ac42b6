package loader

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// TestRecordLayout: Go and C agree on the record's size, so decoding by
// the generated type's layout is sound.
func TestRecordLayout(t *testing.T) {
	spec, err := LoadTracerd()
	if err != nil {
		t.Fatal(err)
	}
	var rec *btf.Struct
	if err := spec.Types.TypeByName("req_record", &rec); err != nil {
		t.Fatal(err)
	}
	if int(rec.Size) != RecordSize {
		t.Fatalf("C struct req_record is %d bytes, Go Record %d", rec.Size, RecordSize)
	}
	var conn *btf.Struct
	if err := spec.Types.TypeByName("traced_conn", &conn); err != nil {
		t.Fatal(err)
	}
	if int(conn.Size) != int(unsafe.Sizeof(TracerdTracedConn{})) {
		t.Fatalf("C struct traced_conn is %d bytes, Go %d", conn.Size, unsafe.Sizeof(TracerdTracedConn{}))
	}
}
