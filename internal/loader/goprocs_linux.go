package loader

// SetGoProc registers a Go process's offsets: its uprobes act from now.
func (t *Tracer) SetGoProc(pid uint32, p TracerdGoProc) error {
	return t.coll.Maps[TracerdMapGoProcs].Put(pid, p)
}

// DeleteGoProc forgets a Go process: its uprobes, still attached, do
// nothing from now.
func (t *Tracer) DeleteGoProc(pid uint32) error {
	return t.coll.Maps[TracerdMapGoProcs].Delete(pid)
}
