package speedtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server answers speed tests. The zero value is usable.
type Server struct {
	// Logger receives one line per test at debug level, and failures.
	// Nil discards.
	Logger *slog.Logger
	// MaxDuration is the longest test the server runs. Zero means
	// DefaultMaxDuration.
	MaxDuration time.Duration
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve answers speed tests on ln with a zero Server (no logging, default
// limits); see Server.Serve.
func Serve(ctx context.Context, ln net.Listener) error {
	var s Server
	return s.Serve(ctx, ln)
}

// Serve answers speed tests on ln until ctx ends (it then closes ln, ends
// the tests in progress, and returns nil) or ln fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			if err := s.ServeConn(ctx, conn); err != nil {
				s.logger().Debug("speed test failed", slog.String("remote", conn.RemoteAddr().String()), slog.Any("error", err))
			}
		})
	}
}

// ServeConn answers one speed test on conn, and closes it.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	hb := make([]byte, headerSize)
	conn.SetReadDeadline(time.Now().Add(startTimeout))
	if _, err := io.ReadFull(conn, hb); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	maxDuration := s.MaxDuration
	if maxDuration <= 0 {
		maxDuration = DefaultMaxDuration
	}
	h, err := parseHeader(hb, maxDuration)
	if err != nil {
		refuse(conn, err.Error())
		return fmt.Errorf("refused: %w", err)
	}
	conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte{statusOK}); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	buf := make([]byte, bufSize)
	log := s.logger().With(slog.String("remote", conn.RemoteAddr().String()), slog.String("direction", string(h.dir)))

	if h.dir == Down {
		// The client closes when its window is over; until then, and
		// at most a while past the duration, send.
		conn.SetWriteDeadline(time.Now().Add(startTimeout + h.duration + endTimeout))
		n, err := send(conn, buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Debug("speed test done", slog.Int64("bytes_written", n), slog.Any("end", err))
		return nil
	}

	r, err := receive(conn, Up, h.duration, h.interval, buf)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	conn.SetDeadline(time.Now().Add(endTimeout))
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	if _, err := conn.Write(append(msg, b...)); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	// Read on until the client, which stops sending once it has the
	// result, closes: closing first, with its data unread, would reset
	// the connection and could destroy the result on the way.
	for {
		if _, err := conn.Read(buf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("wait for the client to close: %w", err)
		}
	}
	log.Debug("speed test done", slog.Int64("bytes", r.Bytes), slog.Duration("duration", r.Duration))
	return nil
}

// refuse tells the client why the test will not run.
func refuse(conn net.Conn, msg string) {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b := []byte{statusErr}
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	conn.SetWriteDeadline(time.Now().Add(endTimeout))
	conn.Write(append(b, msg...))
}
