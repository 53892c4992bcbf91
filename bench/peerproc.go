package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// The library ceiling again, with each tunnel peer in a process of its
// own, as the product runs them (CLI and agent). On a loaded machine two
// processes get more of the CPUs than one, so the in-process pair is no
// ceiling for them; this pair is the like-for-like one. The parent relays
// the peers' nodes, as the coordinator would, over the children's stdin
// and stdout, one JSON message a line.

// peerProcArg, as the first argument, makes the bench binary a peer.
const peerProcArg = "internal-tunnel-peer"

// libraryEchoPort is where each peer process echoes what it receives.
const libraryEchoPort = libraryPort + 1

// peerMsg is one line between the parent and a peer process.
type peerMsg struct {
	// Child to parent.
	ID    uuid.UUID       `json:"id,omitempty"`
	Node  *tether.Node    `json:"node,omitempty"` // our node changed
	MBps  float64         `json:"mbps,omitempty"` // a transfer's result
	RTTs  []time.Duration `json:"rtts,omitempty"` // round trips' results
	Error string          `json:"error,omitempty"`

	// Parent to child.
	DERPMap *tailcfg.DERPMap `json:"derp_map,omitempty"` // first message: start
	Block   bool             `json:"block,omitempty"`    // relay only
	PeerID  uuid.UUID        `json:"peer_id,omitempty"`  // with Node: upsert this peer
	Measure *measureMsg      `json:"measure,omitempty"`
}

type measureMsg struct {
	Direct   bool          `json:"direct"` // the path to wait for
	Warm     time.Duration `json:"warm"`
	Duration time.Duration `json:"duration"`
	Runs     int           `json:"runs"` // windows; the median counts

	// With RoundTrips > 0, time that many small round trips to the peer's
	// echo port (after a warm-up of Warm) instead of a download.
	RoundTrips int `json:"round_trips,omitempty"`
}

// peerProcMain is the child: it starts a tunnel.Conn, serves the source
// on libraryPort, and downloads from its peer when told to.
func peerProcMain() int {
	in := json.NewDecoder(os.Stdin)
	var outMu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	send := func(m peerMsg) {
		outMu.Lock()
		defer outMu.Unlock()
		out.Encode(m)
	}
	fail := func(err error) int {
		send(peerMsg{Error: err.Error()})
		return 1
	}
	var start peerMsg
	if err := in.Decode(&start); err != nil || start.DERPMap == nil {
		return fail(fmt.Errorf("want a start message: %v", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := newPeer(ctx, slog.New(slog.DiscardHandler), start.DERPMap, start.Block)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetNodeCallback(func(n *tether.Node) { send(peerMsg{ID: c.ID(), Node: n}) })
	ln, err := c.Listen("tcp", libraryPort)
	if err != nil {
		return fail(err)
	}
	src := serve(ln, source)
	defer src.close()
	eln, err := c.Listen("tcp", libraryEchoPort)
	if err != nil {
		return fail(err)
	}
	ech := serve(eln, echo)
	defer ech.close()

	var peer netip.Addr
	for {
		var m peerMsg
		if err := in.Decode(&m); err != nil {
			return 0 // the parent is done
		}
		switch {
		case m.Node != nil:
			if err := c.UpsertPeer(m.PeerID, m.Node); err != nil {
				return fail(err)
			}
			peer = tether.TunnelIP(m.PeerID)
		case m.Measure != nil:
			// In the background: node updates keep coming meanwhile.
			target, mm := peer, *m.Measure
			go func() {
				if mm.RoundTrips > 0 {
					ds, err := peerRoundTrips(ctx, c, target, mm)
					if err != nil {
						send(peerMsg{Error: err.Error()})
						return
					}
					send(peerMsg{RTTs: ds})
					return
				}
				mbps, err := peerDownload(ctx, c, target, mm)
				if err != nil {
					send(peerMsg{Error: err.Error()})
					return
				}
				send(peerMsg{MBps: mbps})
			}()
		}
	}
}

// peerDownload downloads from the peer's source once the path is the one
// wanted.
func peerDownload(ctx context.Context, c *tunnel.Conn, peer netip.Addr, m measureMsg) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	dial := func(ctx context.Context) (net.Conn, error) {
		return c.DialContext(ctx, "tcp", netip.AddrPortFrom(peer, libraryPort))
	}
	conn, err := dial(ctx)
	if err != nil {
		return 0, err
	}
	err = drain(conn, 200*time.Millisecond)
	conn.Close()
	if err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	if err := awaitPath(ctx, c, peer, m.Direct); err != nil {
		return 0, err
	}
	mbps, _, err := measureDownload(ctx, dial, m.Warm, m.Duration, m.Runs)
	return mbps, err
}

// peerRoundTrips times small round trips to the peer's echo port once the
// path is the one wanted.
func peerRoundTrips(ctx context.Context, c *tunnel.Conn, peer netip.Addr, m measureMsg) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := c.DialContext(ctx, "tcp", netip.AddrPortFrom(peer, libraryEchoPort))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := roundTrips(conn, 10, rttSize, 0); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if err := awaitPath(ctx, c, peer, m.Direct); err != nil {
		return nil, err
	}
	return roundTrips(conn, m.RoundTrips, rttSize, m.Warm)
}

// peerProc is a running peer process, seen from the parent.
type peerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	msgs  chan peerMsg
	done  chan struct{}
}

func startPeerProc(dm *tailcfg.DERPMap, block bool) (*peerProc, error) {
	cmd, stdin, stdout, err := startChild(peerProcArg)
	if err != nil {
		return nil, err
	}
	p := &peerProc{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), msgs: make(chan peerMsg, 64), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var m peerMsg
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.msgs <- m
			}
		}
		cmd.Wait()
	}()
	if err := p.enc.Encode(peerMsg{DERPMap: dm, Block: block}); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// close ends the child: it exits when its stdin closes.
func (p *peerProc) close() {
	p.stdin.Close()
	for {
		select {
		case <-p.msgs:
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			return
		}
	}
}

// runLibraryProcs measures the two-process ceiling, direct and DERP.
func runLibraryProcs(ctx context.Context, cfg *config, res *results) error {
	r := startRelay(cfg.log)
	defer r.close()
	for _, tc := range []struct {
		name      string
		relayOnly bool
	}{
		{"library/direct-2proc", false},
		{"library/derp-2proc", true},
	} {
		path := "direct"
		if tc.relayOnly {
			path = "DERP over plain HTTP"
		}
		m := measureMsg{Direct: !tc.relayOnly, Warm: cfg.warm, Duration: cfg.duration, Runs: cfg.runs}
		got, err := procMeasure(ctx, r, tc.relayOnly, m)
		if err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		res.higher(tc.name, got.MBps, "MB/s", "down, one connection, "+path+", each peer in its own process")

		m.RoundTrips, m.Warm = cfg.rttCount, cfg.rttWarm
		got, err = procMeasure(ctx, r, tc.relayOnly, m)
		if err != nil {
			return fmt.Errorf("%s round trips: %w", tc.name, err)
		}
		s := summarize(got.RTTs)
		note := fmt.Sprintf("%d × %d B, %s, each peer in its own process", s.N, rttSize, path)
		res.lower(tc.name+"/rtt-p50", micros(s.P50), "µs", note)
		res.lower(tc.name+"/rtt-p99", micros(s.P99), "µs", note)
	}
	return nil
}

// procMeasure starts two peer processes, introduces them, and has the first
// measure what m asks; the answer is its result message.
func procMeasure(ctx context.Context, r *relay, relayOnly bool, m measureMsg) (peerMsg, error) {
	a, err := startPeerProc(r.dm, relayOnly)
	if err != nil {
		return peerMsg{}, err
	}
	defer a.close()
	b, err := startPeerProc(r.dm, relayOnly)
	if err != nil {
		return peerMsg{}, err
	}
	defer b.close()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	// Relay nodes both ways until a's result comes; a starts once it knows
	// b.
	measuring := false
	for {
		select {
		case msg := <-a.msgs:
			switch {
			case msg.Error != "":
				return peerMsg{}, errors.New(msg.Error)
			case msg.Node != nil:
				if err := b.enc.Encode(peerMsg{PeerID: msg.ID, Node: msg.Node}); err != nil {
					return peerMsg{}, err
				}
			case msg.MBps != 0 || len(msg.RTTs) > 0:
				return msg, nil
			}
		case msg := <-b.msgs:
			switch {
			case msg.Error != "":
				return peerMsg{}, errors.New(msg.Error)
			case msg.Node != nil:
				if err := a.enc.Encode(peerMsg{PeerID: msg.ID, Node: msg.Node}); err != nil {
					return peerMsg{}, err
				}
				if !measuring {
					measuring = true
					if err := a.enc.Encode(peerMsg{Measure: &m}); err != nil {
						return peerMsg{}, err
					}
				}
			}
		case <-a.done:
			return peerMsg{}, errors.New("peer process a exited")
		case <-b.done:
			return peerMsg{}, errors.New("peer process b exited")
		case <-ctx.Done():
			return peerMsg{}, ctx.Err()
		}
	}
}
