package cli

import (
	"io"
	"os"

	"github.com/tetherdev/tether/internal/coalesce"
)

// stdioBufSize is the buffer of each direction of `tether ssh --stdio`.
// Through the tunnel's userspace TCP, one large read or write costs about
// what a small one does; with 32 KiB (io.Copy's) the bridge was a fifth of
// the CLI's CPU while OpenSSH moved bulk data.
const stdioBufSize = 256 << 10

// stdinStream reads what OpenSSH writes to a ProxyCommand's stdin, a packet
// at a time, and gathers the packets of a bulk upload into larger reads
// (see coalesce.StreamReader).
func stdinStream(in io.Reader) io.Reader {
	if f, ok := in.(*os.File); ok {
		coalesce.GrowPipe(f)
		return coalesce.NewStreamReader(f)
	}
	return in
}

// copyStdio copies src to dst through one buffer of stdioBufSize until src
// ends or either fails. Unlike io.Copy it never hands the copy to an
// *os.File's ReadFrom, which uses 32 KiB of its own.
func copyStdio(dst io.Writer, src io.Reader) error {
	if f, ok := dst.(*os.File); ok {
		coalesce.GrowPipe(f)
	}
	buf := make([]byte, stdioBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
