package correlate

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// Correlator turns records into Requests. Not safe for concurrent use.
type Correlator struct {
	clock    Clock
	rng      *rand.ChaCha8
	goProcs  map[uint32]*goProc
	comms    map[uint32]string
	goRetain time.Duration
	released []Request // held requests whose Go call came (see Released)
	// Go calls not exported: served on connections the kernel side did
	// not trace, or HTTP/1 calls without their kernel record.
	untracedCalls uint64
}

// UntracedGoCalls counts the Go calls left out because no traced
// connection served them (see goProc.exportable).
func (c *Correlator) UntracedGoCalls() uint64 { return c.untracedCalls }

// New returns a Correlator whose clock offset is measured now. Go events
// are kept for goRetain to be joined with kernel records, which arrive
// when a request ends (up to the idle timeout after its answer).
func New(goRetain time.Duration) *Correlator {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(seed[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[16:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[24:], rand.Uint64())
	return &Correlator{clock: NewClock(), rng: rand.NewChaCha8(seed),
		goProcs: map[uint32]*goProc{}, comms: map[uint32]string{}, goRetain: goRetain}
}

// maxComms bounds the pid → comm cache.
const maxComms = 4096

// Clock is the correlator's monotonic → wall-clock conversion.
func (c *Correlator) Clock() Clock { return c.clock }

// Request builds the Request of one kernel record, with the Go view of
// its process joined in. ok is false when the record is held back
// because the Go call serving it has not returned yet (see holdForGo);
// it comes out of Released or Streams later.
func (c *Correlator) Request(rec *loader.Record) (r Request, ok bool) {
	r = c.decode(rec)
	if gp := c.goProcs[rec.Pid]; gp != nil {
		gp.notePeer(r.Conn.Peer, r.EndUnixNano)
		if gp.holdForGo(&r, rec, c.clock) {
			gp.hold(rec)
			return Request{}, false
		}
	}
	c.joinGo(&r, rec)
	assignIDs(&r, c.rng)
	return r, true
}

// Released returns held requests whose Go call has come since the last
// call (nil when none; the slice is reused).
func (c *Correlator) Released() []Request {
	out := c.released
	c.released = c.released[:0]
	return out
}

// release builds a held record's request now that its Go view is known
// (or will not come).
func (c *Correlator) release(h *heldRecord) Request {
	r := c.decode(&h.rec)
	c.joinGo(&r, &h.rec)
	assignIDs(&r, c.rng)
	return r
}

// decode is FromRecord with the process's comm string reused.
func (c *Correlator) decode(rec *loader.Record) Request {
	// A process's comm rarely changes: reuse its string.
	comm, ok := c.comms[rec.Pid]
	if !ok || !sameCString(rec.Comm[:], comm) {
		comm = cString(rec.Comm[:])
		if len(c.comms) >= maxComms {
			clear(c.comms) // a cache: host-wide tracing sees pids come and go
		}
		c.comms[rec.Pid] = comm
	}
	if gp := c.goProcs[rec.Pid]; gp != nil {
		gp.comm = comm
	}
	return fromRecord(rec, c.clock, comm)
}
