// Package wire is a fixture for tsgen's tests: one of each thing it
// translates.
package wire

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// Header names a header.
const Header = "X-Wire"

// Limits, as a group: its doc is about all of them.
const (
	MaxItems = 10 // how many items at most
	// Ratio is a float.
	Ratio   = 0.5
	Enabled = true
	hidden  = "not exported"
)

// Kind is an enum of strings.
type Kind string

const (
	KindB Kind = "b"
	KindA Kind = "a"
)

// Free is a string type without constants.
type Free string

// Span marshals itself as text.
type Span int64

func (s Span) MarshalText() ([]byte, error) { return []byte("1s"), nil }

// Raw writes its own JSON; fields of it cannot be described.
type Raw struct{ v int }

func (r Raw) MarshalJSON() ([]byte, error) { return json.Marshal(r.v) }

// Base is embedded by Item.
type Base struct {
	ID uuid.UUID `json:"id"`
}

// Item has one field of every kind. A comment with */ in it stays a
// comment.
type Item struct {
	Base
	// Name is documented.
	Name     string            `json:"name"`
	Kind     Kind              `json:"kind"`
	Free     Free              `json:"free,omitempty"`
	Count    int               `json:"count,string"`
	Span     Span              `json:"span"`
	At       time.Time         `json:"at"`
	Addr     netip.Addr        `json:"addr"`
	Maybe    *Base             `json:"maybe"`
	Skipped  *Base             `json:"skipped,omitempty"`
	Zero     Base              `json:"zero,omitzero"`
	List     []Kind            `json:"list"`
	Ptrs     []*Base           `json:"ptrs"`
	Bytes    []byte            `json:"bytes"`
	Fixed    [2]int            `json:"fixed"`
	Labels   map[string]string `json:"labels,omitempty"`
	ByID     map[int]Base      `json:"by_id"`
	Any      any               `json:"any,omitempty"`
	Foreign  *url.URL          `json:"foreign"`
	Own      Raw               `json:"own"`
	Dashed   bool              `json:"x-dashed"`
	Untagged float64
	Ignored  string `json:"-"`
	private  string
}

// NoTags is not on the wire: it has no json tags.
type NoTags struct {
	A string
}

// Empty is on the wire, with nothing in it but an ignored field.
type Empty struct {
	Gone string `json:"-"`
}

type unexported struct {
	A string `json:"a"`
}
