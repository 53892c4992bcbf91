// Package bad is a fixture for tsgen's tests: a wire type it cannot
// describe.
package bad

// Stream has a field that JSON cannot carry.
type Stream struct {
	C chan int `json:"c"`
}
