package flags

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/tracerd/tracerd/internal/config"
)

// The flag.Value types below write into a configuration in place, so
// that a flag overrides the file's value and leaves it when not given.
// Their String is "": flag.PrintDefaults shows no default for them
// (the file's value is not a default), and calls String on a zero value.

type uintList[T uint16 | uint32] struct {
	vals *[]T
	bits int
	name string
}

func (l uintList[T]) String() string { return "" }
func (l uintList[T]) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, l.bits)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a valid %s", part, l.name)
		}
		*l.vals = append(*l.vals, T(v))
	}
	return nil
}

// stringList is a repeatable flag; check, when set, vets each value.
type stringList struct {
	vals  *[]string
	check func(string) error
}

func (l stringList) String() string { return "" }
func (l stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	if l.check != nil {
		if err := l.check(s); err != nil {
			return err
		}
	}
	*l.vals = append(*l.vals, s)
	return nil
}

// boolString is a boolean flag kept as text ("true", "false"; "" is not
// given).
type boolString struct{ v *string }

func (b boolString) String() string   { return "" }
func (b boolString) IsBoolFlag() bool { return true }
func (b boolString) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*b.v = strconv.FormatBool(v)
	return nil
}

// rawString is a string flag kept as given, not empty; check, when set,
// vets it.
type rawString struct {
	v     *string
	check func(string) error
}

func (r rawString) String() string { return "" }
func (r rawString) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty value")
	}
	if r.check != nil {
		if err := r.check(s); err != nil {
			return err
		}
	}
	*r.v = s
	return nil
}

// listenAddr is --metrics-addr: host:port or off.
type listenAddr struct{ v *string }

func (a listenAddr) String() string { return "" }
func (a listenAddr) Set(s string) error {
	if s != "off" {
		if err := config.CheckListenAddr(s); err != nil {
			return err
		}
	}
	*a.v = s
	return nil
}

// replaceList makes a repeatable flag replace the file's list at its
// first use instead of adding to it.
type replaceList struct {
	flag.Value
	clear func()
	used  bool
}

// String is the wrapped flag's; flag.PrintDefaults calls it on a zero
// replaceList (no Value) to learn the default, which must not panic.
func (r *replaceList) String() string {
	if r == nil || r.Value == nil {
		return ""
	}
	return r.Value.String()
}

func (r *replaceList) Set(s string) error {
	if !r.used {
		r.used = true
		r.clear()
	}
	return r.Value.Set(s)
}
