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
	_, err := copyLarge(dst, src)
	return err
}

// copyLarge is copyStdio, counting what it copied. At src's EOF it
// returns a nil error, as io.Copy does.
func copyLarge(dst io.Writer, src io.Reader) (int64, error) {
	if f, ok := dst.(*os.File); ok {
		coalesce.GrowPipe(f)
	}
	buf := make([]byte, stdioBufSize)
	var copied int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			copied += int64(m)
			if werr != nil {
				return copied, werr
			}
		}
		if err == io.EOF {
			return copied, nil
		}
		if err != nil {
			return copied, err
		}
	}
}

// sessionOutput is what the built-in client gives x/crypto/ssh as a
// session's stdout or stderr. The library copies the channel to it with
// io.Copy, which lets a writer's ReadFrom do the copy: this one reads
// through stdioBufSize rather than io.Copy's 32 KiB (an *os.File's own
// ReadFrom falls back to that), so a bulk download takes whatever has
// arrived, several SSH packets, per read and per write to stdout, and the
// channel's window goes back to the agent in fewer, larger adjustments.
type sessionOutput struct{ w io.Writer }

func (o sessionOutput) Write(p []byte) (int, error) { return o.w.Write(p) }

func (o sessionOutput) ReadFrom(r io.Reader) (int64, error) { return copyLarge(o.w, r) }
