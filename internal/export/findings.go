package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/tracerd/tracerd/internal/correlate"
)

// JSONFinding is one cause of a request's lost time (docs/findings.md).
type JSONFinding struct {
	Code     string       `json:"code"`
	Phase    string       `json:"phase"`
	LostNs   int64        `json:"lost_ns"`
	Evidence JSONEvidence `json:"evidence"`
	Remedy   string       `json:"remedy"`
}

// JSONEvidence is an object of numbers and names, in the order the
// finding's rule gave them.
type JSONEvidence []correlate.Evidence

func (e JSONEvidence) MarshalJSON() ([]byte, error) { return appendEvidence(nil, e), nil }

// UnmarshalJSON reads the object back: integers as EvInt, other numbers
// as EvFloat, strings as EvText.
func (e *JSONEvidence) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("evidence: want an object")
	}
	*e = (*e)[:0]
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		v, err := dec.Token()
		if err != nil {
			return err
		}
		switch x := v.(type) {
		case json.Number:
			if n, err := x.Int64(); err == nil {
				*e = append(*e, correlate.IntEvidence(key, n))
			} else if f, err := x.Float64(); err == nil {
				*e = append(*e, correlate.FloatEvidence(key, f))
			} else {
				return fmt.Errorf("evidence %s: %v", key, err)
			}
		case string:
			*e = append(*e, correlate.TextEvidence(key, x))
		default:
			return fmt.Errorf("evidence %s: want a number or a string", key)
		}
	}
	_, err := dec.Token()
	return err
}

// Get finds the evidence of key.
func (e JSONEvidence) Get(key string) (correlate.Evidence, bool) {
	for _, v := range e {
		if v.Key == key {
			return v, true
		}
	}
	return correlate.Evidence{}, false
}

// appendFindings appends `,"findings":[...]`.
func appendFindings(b []byte, fs []correlate.Finding) []byte {
	b = append(b, `,"findings":[`...)
	for i := range fs {
		f := &fs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":"`...)
		b = append(b, f.Code.String()...)
		b = append(b, `","phase":"`...)
		b = append(b, f.Phase.String()...)
		b = append(b, `","lost_ns":`...)
		b = appendInt(b, f.LostNs)
		b = append(b, `,"evidence":`...)
		b = appendEvidence(b, f.Evidence)
		b = append(b, `,"remedy":`...)
		if f.Code < correlate.NumFindingCodes {
			b = append(b, remedyJSON[f.Code]...)
		} else {
			b = appendString(b, f.Code.Remedy())
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// remedyJSON are the remedies as JSON strings, escaped once.
var remedyJSON = func() (out [correlate.NumFindingCodes][]byte) {
	for c := range correlate.NumFindingCodes {
		out[c] = appendString(nil, c.Remedy())
	}
	return out
}()

func appendEvidence(b []byte, ev []correlate.Evidence) []byte {
	b = append(b, '{')
	for i, e := range ev {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, e.Key)
		b = append(b, ':')
		switch e.Kind {
		case correlate.EvInt:
			b = appendInt(b, e.Int)
		case correlate.EvFloat:
			if math.IsNaN(e.Float) || math.IsInf(e.Float, 0) {
				b = append(b, "null"...)
			} else {
				// Always with a point: read back, it stays a decimal.
				n := len(b)
				b = strconv.AppendFloat(b, e.Float, 'f', -1, 64)
				if bytes.IndexByte(b[n:], '.') < 0 {
					b = append(b, ".0"...)
				}
			}
		default:
			b = appendString(b, e.Text)
		}
	}
	return append(b, '}')
}
