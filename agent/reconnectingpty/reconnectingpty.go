// Package reconnectingpty is the backend of the web terminal: terminal
// sessions that outlive their connections, so that a browser that reloads
// or loses its network gets its shell and its recent output back.
//
// # Protocol
//
// A client connects (on the agent, over the tunnel) and sends one header
// line, a JSON object followed by '\n', at most 4 KiB:
//
//	{"id": "SESSION-ID", "height": 24, "width": 80, "command": "optional"}
//
// The id names the session. If a session with that id is alive, the client
// attaches to it (the command is then ignored, and the size applies as a
// resize); otherwise a new one starts with the command run by the user's
// shell ("SHELL -c COMMAND"), or the user's login shell when the command is
// empty.
//
// From then on the server sends the terminal's output as raw bytes: first
// the session's scrollback (its last 64 KiB of output by default), then
// live output. The stream is the terminal's bytes unchanged, so a chunk
// may end in the middle of a UTF-8 sequence; the consumer decodes it as a
// stream (xterm.js does when given bytes). The scrollback never starts in
// the middle of one. When the session's process exits the server sends the
// remaining output and closes the connection. If the session cannot start,
// the server sends a one-line message meant for the terminal and closes.
//
// The client sends frames, each a type byte, a big-endian uint16 payload
// length and the payload:
//
//	'd' len data            input for the terminal, as typed
//	'r' 4   height width    a resize, each a big-endian uint16
//
// Frames of other types are skipped, so that new types can be added
// without breaking older servers.
//
// # Sessions
//
// Any number of clients may attach to a session at once; all see its
// output and any may type. A client that cannot keep up with the output is
// disconnected rather than allowed to stall the others; it can reconnect
// and gets the scrollback. A session with no client attached for
// Options.IdleTimeout (an hour by default) is hung up. A session whose
// process exits is removed, and its id may be used again for a new one.
//
// Sessions run as the agent's user, in the home directory, with TERM set
// to xterm-256color and TETHER=true in their environment, as in agent/sshd.
package reconnectingpty

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Header is the first line of a connection.
type Header struct {
	// ID names the session to attach to or start; 1 to 256 bytes.
	ID string `json:"id"`
	// Height and Width are the terminal's size in rows and columns;
	// 0 leaves the size as it is (24x80 for a new session).
	Height uint16 `json:"height"`
	Width  uint16 `json:"width"`
	// Command is run by a new session instead of a login shell.
	Command string `json:"command,omitempty"`
}

// Limits of the protocol.
const (
	maxHeaderLen = 4 << 10
	maxIDLen     = 256
	// maxFramePayload is the largest payload a frame can carry.
	maxFramePayload = 0xffff
)

// Frame types, sent from the client to the server.
const (
	frameData   byte = 'd'
	frameResize byte = 'r'
)

func (h Header) validate() error {
	if h.ID == "" {
		return errors.New("session id is empty")
	}
	if len(h.ID) > maxIDLen {
		return fmt.Errorf("session id is longer than %d bytes", maxIDLen)
	}
	return nil
}

// writeFrame writes one frame. Payloads are at most maxFramePayload.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > maxFramePayload {
		return fmt.Errorf("frame payload of %d bytes is too long", len(payload))
	}
	buf := make([]byte, 3+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint16(buf[1:3], uint16(len(payload)))
	copy(buf[3:], payload)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame into buf, which must hold maxFramePayload
// bytes, and returns its type and payload (a slice of buf).
func readFrame(r io.Reader, buf []byte) (typ byte, payload []byte, err error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[1:3]))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf[:n], nil
}

func resizePayload(height, width uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:2], height)
	binary.BigEndian.PutUint16(p[2:4], width)
	return p[:]
}

func parseResize(p []byte) (height, width uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), true
}
