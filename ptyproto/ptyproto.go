// Package ptyproto is the wire protocol of the web terminal's reconnecting
// PTY: what the server's terminal relay (the client) and the agent's
// reconnecting PTY (the server, agent/reconnectingpty) must agree on. It
// is kept apart from both so that the control plane links no PTY or
// user-shell code, and the agent no server code.
//
// # Protocol
//
// A client connects (on the agent, over the tunnel, at
// tether.AgentPTYPort) and sends one header line, a JSON object followed
// by '\n', at most MaxHeaderLen bytes:
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
// the session's scrollback, then live output. The stream is the terminal's
// bytes unchanged, so a chunk may end in the middle of a UTF-8 sequence;
// the consumer decodes it as a stream (xterm.js does when given bytes). The
// scrollback never starts in the middle of one. When the session's process
// exits the server sends the remaining output and closes the connection. If
// the header is malformed, the server sends a one-line message meant for
// the terminal and closes. A new session's process starts after the client
// is attached (on a loaded machine starts queue, and a client must not
// wait for all of them before its answer): one that cannot start sends
// such a line as its output, and ends.
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
// # Positions (tether.AgentTerminalPort)
//
// The agent serves the same protocol a second time, at
// tether.AgentTerminalPort, with one difference: before any output the
// server answers the header with one line of its own, an Attached (JSON
// and '\n'), that says where in the session's output the bytes that follow
// start. Every session counts its output from 0 and has an instance name,
// fresh each time a session starts, so that a session started again under
// the same id (the agent restarted) is not taken for the old one. A client
// that already holds a session's output up to some offset names it in the
// header (Resume) and gets the output from there on, without the replay,
// as long as the session still keeps that much scrollback; otherwise, and
// without Resume, it gets the scrollback and Attached.Replay says so (the
// client resets its screen first). This is what lets the web terminal move
// between the server's relay and a direct WebRTC data channel without
// losing or repeating a byte: each path carries the same stream, and the
// browser writes each offset once. Old agents forward that port to the
// workspace's loopback, where nothing answers: the server then uses
// AgentPTYPort without positions.
//
// A data channel from a browser (agent/rtcterm) carries this same protocol:
// header line, frames, Attached and output, each write a message. Its
// session id and command are those the server bound to the channel when it
// forwarded the browser's offer; the browser's header only resumes and
// sizes.
//
// The browser does not speak this protocol over its WebSocket: it speaks
// JSON messages (tether.TerminalInput) to the server, which turns them
// into frames (server/terminal.go, site/src/terminal.ts).
package ptyproto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Header is the first line of a connection.
type Header struct {
	// ID names the session to attach to or start; 1 to MaxIDLen bytes.
	ID string `json:"id"`
	// Height and Width are the terminal's size in rows and columns;
	// 0 leaves the size as it is (24x80 for a new session).
	Height uint16 `json:"height"`
	Width  uint16 `json:"width"`
	// Command is run by a new session instead of a login shell.
	Command string `json:"command,omitempty"`
	// Resume, at tether.AgentTerminalPort only, continues the output of
	// session instance Resume.Instance at Resume.Offset.
	Resume *Position `json:"resume,omitempty"`
}

// Position is a point in a session's output: its instance and an offset
// in bytes from the session's first output.
type Position struct {
	Instance string `json:"instance"`
	Offset   uint64 `json:"offset"`
}

// Attached is the server's answer line at tether.AgentTerminalPort: the
// output that follows starts at Position. Replay is true when it is the
// session's scrollback rather than the continuation the client asked for
// (a new session, none asked for, or too old): the client resets its
// screen before writing it.
type Attached struct {
	Position
	Replay bool `json:"replay"`
}

// MaxInstanceLen bounds a session instance's name.
const MaxInstanceLen = 64

// ReadAttached reads the answer line of a connection to
// tether.AgentTerminalPort. br's buffer must hold MaxHeaderLen bytes.
func ReadAttached(br *bufio.Reader) (Attached, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return Attached{}, fmt.Errorf("answer is longer than %d bytes", MaxHeaderLen)
	}
	if err != nil {
		return Attached{}, fmt.Errorf("read answer: %w", err)
	}
	var a Attached
	if err := json.Unmarshal(line, &a); err != nil {
		return Attached{}, fmt.Errorf("parse answer: %w", err)
	}
	if a.Instance == "" || len(a.Instance) > MaxInstanceLen {
		return Attached{}, fmt.Errorf("answer names no session instance")
	}
	return a, nil
}

// AttachedLine is a's line as the server sends it.
func AttachedLine(a Attached) []byte {
	b, _ := json.Marshal(a) // cannot fail: strings and numbers
	return append(b, '\n')
}

// Limits of the protocol.
const (
	// MaxHeaderLen bounds the header line, its '\n' included.
	MaxHeaderLen = 4 << 10
	// MaxIDLen bounds a session id.
	MaxIDLen = 256
	// MaxFramePayload is the largest payload a frame can carry.
	MaxFramePayload = 0xffff
)

// Frame types, sent from the client to the server.
const (
	FrameData   byte = 'd'
	FrameResize byte = 'r'
)

// Validate reports whether h can start or attach to a session.
func (h Header) Validate() error {
	if h.ID == "" {
		return errors.New("session id is empty")
	}
	if len(h.ID) > MaxIDLen {
		return fmt.Errorf("session id is longer than %d bytes", MaxIDLen)
	}
	if h.Resume != nil && len(h.Resume.Instance) > MaxInstanceLen {
		return fmt.Errorf("session instance is longer than %d bytes", MaxInstanceLen)
	}
	return nil
}

// ReadHeader reads and validates a connection's header line. br's buffer
// must hold at least MaxHeaderLen bytes (bufio.NewReaderSize); the frames
// that follow the header stay in it.
func ReadHeader(br *bufio.Reader) (Header, error) {
	h, err := readHeaderLine(br)
	if err != nil {
		return Header{}, err
	}
	if err := h.Validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// ReadBoundHeader reads the header of a connection whose session the
// server chose beforehand (a browser's data channel): the id and command
// are id and none, whatever the line says; the line only resumes and
// sizes.
func ReadBoundHeader(br *bufio.Reader, id string) (Header, error) {
	h, err := readHeaderLine(br)
	if err != nil {
		return Header{}, err
	}
	h.ID, h.Command = id, ""
	if err := h.Validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

func readHeaderLine(br *bufio.Reader) (Header, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxHeaderLen {
		return Header{}, fmt.Errorf("header is longer than %d bytes", MaxHeaderLen)
	}
	if err != nil {
		return Header{}, fmt.Errorf("read header: %w", err)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, fmt.Errorf("parse header: %w", err)
	}
	return h, nil
}

// WriteFrame writes one frame. Payloads are at most MaxFramePayload bytes.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("frame payload of %d bytes is too long", len(payload))
	}
	buf := make([]byte, 3+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint16(buf[1:3], uint16(len(payload)))
	copy(buf[3:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame into buf, which must hold MaxFramePayload
// bytes, and returns its type and payload (a slice of buf). It returns
// io.EOF at a clean end between frames, io.ErrUnexpectedEOF inside one.
func ReadFrame(r io.Reader, buf []byte) (typ byte, payload []byte, err error) {
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

// ResizePayload is the payload of a FrameResize.
func ResizePayload(height, width uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:2], height)
	binary.BigEndian.PutUint16(p[2:4], width)
	return p[:]
}

// ParseResize reads a FrameResize's payload; ok is false if it is
// malformed.
func ParseResize(p []byte) (height, width uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), true
}
