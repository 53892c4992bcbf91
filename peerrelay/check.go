package peerrelay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go4.org/mem"
	"tailscale.com/disco"
	"tailscale.com/net/packet"
	"tailscale.com/types/key"
)

// Check allocates an endpoint for a pair of throwaway disco keys and, at
// each address the relay gives its clients, asks to bind it, as a client
// does first: the relay must answer with its challenge. It returns each
// address's failure (nil if it answered). From the server itself, an
// address that only the outside world reaches (a cloud VM's public
// address, say) may not answer although peers reach it.
func (r *Relay) Check(ctx context.Context) map[netip.AddrPort]error {
	a, b := key.NewDisco(), key.NewDisco()
	se, err := r.srv.AllocateEndpoint(a.Public(), b.Public())
	out := make(map[netip.AddrPort]error, len(r.addrs))
	if err != nil {
		for _, ap := range r.addrs {
			out[ap] = fmt.Errorf("allocate a test endpoint: %w", err)
		}
		return out
	}
	bind := &disco.BindUDPRelayEndpoint{BindUDPRelayEndpointCommon: disco.BindUDPRelayEndpointCommon{
		VNI: se.VNI, Generation: 1, RemoteKey: b.Public(),
	}}
	shared := a.Shared(se.ServerDisco)
	pkt, err := relayDiscoPacket(se.VNI, a.Public(), shared, bind)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ap := range r.addrs {
		if err != nil {
			out[ap] = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := bindProbe(ctx, ap, pkt, se.ServerDisco, shared)
			mu.Lock()
			out[ap] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// relayDiscoPacket frames a disco message for a relay endpoint as
// magicsock does: a Geneve control header with the VNI, then the sealed
// disco message.
func relayDiscoPacket(vni uint32, from key.DiscoPublic, shared key.DiscoShared, m disco.Message) ([]byte, error) {
	var id packet.VirtualNetworkID
	id.Set(vni)
	gh := packet.GeneveHeader{Protocol: packet.GeneveProtocolDisco, VNI: id, Control: true}
	pkt := make([]byte, packet.GeneveFixedHeaderLength, 512)
	if err := gh.Encode(pkt); err != nil {
		return nil, fmt.Errorf("encode Geneve header: %w", err)
	}
	pkt = append(pkt, disco.Magic...)
	pkt = from.AppendTo(pkt)
	return append(pkt, shared.Seal(m.AppendMarshal(nil))...), nil
}

// bindProbe sends pkt to ap a few times and waits for the relay's
// challenge.
func bindProbe(ctx context.Context, ap netip.AddrPort, pkt []byte, server key.DiscoPublic, shared key.DiscoShared) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", ap.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for range 3 { // UDP may drop one
		if _, err := conn.Write(pkt); err != nil {
			return err
		}
		wait := time.Now().Add(time.Second)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		conn.SetReadDeadline(wait)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			if isChallenge(buf[:n], server, shared) {
				return nil
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.New("no answer")
}

// isChallenge reports whether b is the relay's sealed bind challenge.
func isChallenge(b []byte, server key.DiscoPublic, shared key.DiscoShared) bool {
	var gh packet.GeneveHeader
	if gh.Decode(b) != nil || !gh.Control || gh.Protocol != packet.GeneveProtocolDisco {
		return false
	}
	b = b[packet.GeneveFixedHeaderLength:]
	src, ok := disco.Source(b)
	if !ok || key.DiscoPublicFromRaw32(mem.B(src)) != server {
		return false
	}
	clear, ok := shared.Open(b[len(disco.Magic)+key.DiscoPublicRawLen:])
	if !ok {
		return false
	}
	m, err := disco.Parse(clear)
	if err != nil {
		return false
	}
	_, ok = m.(*disco.BindUDPRelayEndpointChallenge)
	return ok
}
