package relay

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
)

// AdmitURL is the admission controller's secret URL.
func (d *DERP) AdmitURL() string { return d.admission.url }

// ServeConn serves one client connection, as the HTTP handler does after
// the upgrade, until it ends or ctx does.
func (d *DERP) ServeConn(ctx context.Context, c net.Conn) {
	d.server.Accept(ctx, c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), "test")
}

// MeshLinks lists the mesh links as "ID URL", sorted.
func (d *DERP) MeshLinks() []string {
	d.mesh.mu.Lock()
	defer d.mesh.mu.Unlock()
	var out []string
	for id, l := range d.mesh.links {
		out = append(out, strings.Join([]string{id, l.url}, " "))
	}
	slices.Sort(out)
	return out
}

const (
	QueueDepthKnob = queueDepthKnob
	QueueDepth     = queueDepth
)
