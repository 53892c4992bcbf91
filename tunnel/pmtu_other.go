//go:build !linux

package tunnel

// ignorePathMTU is needed only where the kernel refuses GSO batches above a
// learned path MTU (see pmtu_linux.go).
func ignorePathMTU(network string, port uint16) {}
