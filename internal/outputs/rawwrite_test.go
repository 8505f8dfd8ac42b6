package outputs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FileWriter writes every byte, in order, appending as Create's file
// does; once the file is closed, a write fails as os.File's does.
func TestFileWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	f, err := Create(path, true)
	if err != nil {
		t.Fatal(err)
	}
	w, err := FileWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i, size := range []int{1, 4096, 3 << 20, 870} {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, size)
		n, err := w.Write(chunk)
		if err != nil || n != size {
			t.Fatalf("write %d: %d, %v", size, n, err)
		}
		want = append(want, chunk...)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file has %d bytes, want %d", len(got), len(want))
	}
	f.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after close: %v, want os.ErrClosed", err)
	}
}
