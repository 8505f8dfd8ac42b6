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
}

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

// Clock is the correlator's monotonic → wall-clock conversion.
func (c *Correlator) Clock() Clock { return c.clock }

// Request builds the Request of one kernel record, with the Go view of
// its process joined in.
func (c *Correlator) Request(rec *loader.Record) Request {
	r := FromRecord(rec, c.clock)
	c.comms[r.PID] = r.Comm
	c.joinGo(&r, rec)
	assignIDs(&r, c.rng)
	return r
}
