package correlate

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// Correlator turns records into Requests. Not safe for concurrent use.
type Correlator struct {
	clock Clock
	rng   *rand.ChaCha8
}

// New returns a Correlator whose clock offset is measured now.
func New() *Correlator {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(seed[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[16:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[24:], rand.Uint64())
	return &Correlator{clock: NewClock(), rng: rand.NewChaCha8(seed)}
}

// Request builds the Request of one kernel record.
func (c *Correlator) Request(rec *loader.Record) Request {
	r := FromRecord(rec, c.clock)
	assignIDs(&r, c.rng)
	return r
}
