package ptyproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is the client side of a connection to a reconnecting PTY, as the
// server's web terminal relay uses it: Read returns the terminal's output,
// Write types into it, and Resize changes its size. Read may run
// concurrently with Write and Resize; Write and Resize are safe for
// concurrent use.
type Conn struct {
	conn net.Conn
	r    io.Reader // conn, or a reader that holds what followed the answer

	mu sync.Mutex // serializes frames
}

// Attach starts or attaches to a session on conn, an established
// connection to a reconnecting PTY, by sending the header; ctx bounds that
// write. The Conn owns conn from then on, also when Attach fails.
func Attach(ctx context.Context, conn net.Conn, h Header) (*Conn, error) {
	if err := sendHeader(ctx, conn, h); err != nil {
		return nil, err
	}
	return &Conn{conn: conn, r: conn}, nil
}

// AttachAt is Attach at tether.AgentTerminalPort: it also reads the
// server's answer, which says where the output that Read returns starts.
// ctx bounds both. An error that wraps ErrNoAnswer means the connection
// ended without an answer: the agent does not serve positions.
func AttachAt(ctx context.Context, conn net.Conn, h Header) (*Conn, Attached, error) {
	if err := sendHeader(ctx, conn, h); err != nil {
		return nil, Attached{}, err
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(conn, MaxHeaderLen)
	a, err := ReadAttached(br)
	if !stop() || err != nil {
		conn.Close()
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(err, io.EOF) && br.Buffered() == 0:
			err = ErrNoAnswer
		}
		return nil, Attached{}, fmt.Errorf("attach: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	return &Conn{conn: conn, r: br}, a, nil
}

// ErrNoAnswer is AttachAt's error when the connection ends before the
// server's answer.
var ErrNoAnswer = errors.New("the connection ended without an answer")

// sendHeader validates and sends h; it closes conn when it fails.
func sendHeader(ctx context.Context, conn net.Conn, h Header) error {
	if err := h.Validate(); err != nil {
		conn.Close()
		return fmt.Errorf("attach: %w", err)
	}
	line, err := json.Marshal(h)
	if err != nil {
		conn.Close()
		return fmt.Errorf("attach: %w", err)
	}
	line = append(line, '\n')
	if len(line) > MaxHeaderLen {
		// The server would refuse it; say so here, where the cause is.
		conn.Close()
		return fmt.Errorf("attach: header is longer than %d bytes", MaxHeaderLen)
	}

	if d, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err = conn.Write(line)
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("attach: send header: %w", err)
	}
	conn.SetWriteDeadline(time.Time{})
	return nil
}

// Read reads the terminal's output. It returns io.EOF when the session's
// process has exited (or the server closed the connection).
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write sends p as input to the terminal, in as many frames as it takes.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFramePayload)]
		if err := WriteFrame(c.conn, FrameData, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Resize changes the terminal's size, in rows and columns.
func (c *Conn) Resize(height, width uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return WriteFrame(c.conn, FrameResize, ResizePayload(height, width))
}

// Close closes the connection. The session goes on without it.
func (c *Conn) Close() error { return c.conn.Close() }

// SetDeadline sets the underlying connection's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }
