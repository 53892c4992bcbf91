// Package join connects two byte streams: whatever one side sends, the
// other receives, until both directions have ended. Port forwards on both
// ends of a tunnel (the CLI's and the agent's) use it.
package join

import (
	"io"
	"net"
	"sync"
)

// Conns copies a to b and b to a until both directions end. When one side
// finishes sending, the other is half-closed (CloseWrite) where it supports
// that, so protocols that end a request with EOF still get their reply.
func Conns(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go copyHalf(a, b)
	go copyHalf(b, a)
	wg.Wait()
}
