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

// maxComms bounds the pid → comm cache.
const maxComms = 4096

// Clock is the correlator's monotonic → wall-clock conversion.
func (c *Correlator) Clock() Clock { return c.clock }

// Request builds the Request of one kernel record, with the Go view of
// its process joined in.
func (c *Correlator) Request(rec *loader.Record) Request {
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
	r := fromRecord(rec, c.clock, comm)
	c.joinGo(&r, rec)
	assignIDs(&r, c.rng)
	return r
}
