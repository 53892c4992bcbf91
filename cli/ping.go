package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// pingOutput is the line of `tether ping --output json` for a pong.
func pingOutput(seq int, res tunnel.PingResult) tether.PingOutput {
	out := tether.PingOutput{Seq: seq, LatencyMS: float64(res.Latency.Microseconds()) / 1000}
	out.Path, out.Endpoint, out.DERPRegion = pathOf(res)
	return out
}

// pathOf names a pong's path as `tether list` does: direct with its
// endpoint, or derp with its region.
func pathOf(res tunnel.PingResult) (path, endpoint, derpRegion string) {
	if res.Direct {
		return tether.PathDirect, res.Endpoint, ""
	}
	return tether.PathDERP, "", res.DERPRegionCode
}

// pingTimeout is how long one ping waits for its pong, by default.
const pingTimeout = 5 * time.Second

// pingStats sums up the pings of one `tether ping`.
type pingStats struct {
	sent, received int
	min, max, sum  time.Duration
	direct         bool // a pong came over a direct path
}

func (s *pingStats) add(res tunnel.PingResult) {
	s.received++
	if s.received == 1 || res.Latency < s.min {
		s.min = res.Latency
	}
	s.max = max(s.max, res.Latency)
	s.sum += res.Latency
	s.direct = s.direct || res.Direct
}

// summary is the last lines of `tether ping`, as the ping of other tools
// ends.
func (s *pingStats) summary(name string) string {
	loss := 0.0
	if s.sent > 0 {
		loss = 100 * float64(s.sent-s.received) / float64(s.sent)
	}
	line := fmt.Sprintf("--- %s ping statistics ---\n%s sent, %s received, %.0f%% loss", name, plural(s.sent, "ping"), plural(s.received, "pong"), loss)
	if s.received > 0 {
		avg := s.sum / time.Duration(s.received)
		line += fmt.Sprintf(", min/avg/max %s/%s/%s", roundLatency(s.min), roundLatency(avg), roundLatency(s.max))
	}
	return line
}

// err is how `tether ping` ends: an error when no pong came back, or,
// until direct, when none came over a direct path.
func (s *pingStats) err(workspace string, untilDirect bool) error {
	switch {
	case s.received == 0:
		return fmt.Errorf("no pong from %s (%s sent)", workspace, plural(s.sent, "ping"))
	case untilDirect && !s.direct:
		return fmt.Errorf("no direct path to %s within %s: every pong came through a relay", workspace, plural(s.sent, "ping"))
	}
	return nil
}

// pingError says why a ping got no pong: its own timeout, or what ended
// it otherwise (the tunnel closed as the agent went away, say).
func pingError(err error, timeout time.Duration, gone error) string {
	switch {
	case gone != nil:
		return gone.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no pong within %s", timeout)
	}
	return err.Error()
}

func (r *root) pingCommand() *cobra.Command {
	var (
		tf          tunnelFlags
		n           int
		interval    time.Duration
		timeout     time.Duration
		untilDirect bool
		format      string
	)
	cmd := &cobra.Command{
		Use:   "ping WORKSPACE",
		Short: "Ping a workspace's agent over the tunnel and show the path each pong took",
		Long: "Ping a workspace's agent over the tunnel with path-discovery pings, and show the path each pong\n" +
			"took: direct (with the agent's address) or through a relay. Ends with a summary; exits 1 when no\n" +
			"pong came back, or, with --until-direct, when no pong came over a direct path.",
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if n < 1 {
				return fmt.Errorf("-n must be at least 1, not %d", n)
			}
			if timeout <= 0 || interval < 0 {
				return errors.New("--timeout must be positive and --interval not negative")
			}
			return checkOutput(format)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := r.dialWorkspace(ctx, args[0], tf)
			if err != nil {
				return err
			}
			defer t.stop()
			out := r.env.Stdout
			var stats pingStats
			var last *tunnel.PingResult
			for seq := 1; seq <= n; seq++ {
				if seq > 1 {
					select {
					case <-ctx.Done():
					case <-time.After(interval):
					}
				}
				if ctx.Err() != nil {
					break // interrupted: the summary of what was sent
				}
				stats.sent++
				pctx, cancel := context.WithTimeout(ctx, timeout)
				res, err := t.conn.Ping(pctx, t.agentIP)
				cancel()
				if ctx.Err() != nil {
					stats.sent-- // cut short, not lost
					break
				}
				if err != nil {
					if format == "json" {
						json.NewEncoder(out).Encode(tether.PingOutput{Seq: seq, Path: tether.PathTimeout})
					} else {
						fmt.Fprintf(out, "ping %d: %s\n", seq, pingError(err, timeout, t.gone()))
					}
					continue
				}
				firstDirect := res.Direct && !stats.direct
				stats.add(res)
				last = &res
				if format == "json" {
					json.NewEncoder(out).Encode(pingOutput(seq, res))
				} else {
					via := "DERP(" + res.DERPRegionCode + ")"
					if res.Direct {
						via = res.Endpoint
					}
					fmt.Fprintf(out, "pong from %s via %s in %s\n", t.workspace.Name, via, roundLatency(res.Latency))
					if firstDirect {
						fmt.Fprintln(out, "✔ p2p connection established")
					}
				}
				if untilDirect && res.Direct {
					break
				}
			}
			if format == "text" {
				if last != nil && !last.Direct && ctx.Err() == nil {
					fmt.Fprintln(out, r.relayReasons(ctx, t, tf))
				}
				fmt.Fprintln(out, stats.summary(t.workspace.Name))
			}
			if ctx.Err() != nil && stats.sent == 0 {
				return ctx.Err()
			}
			return stats.err(t.workspace.Owner+"/"+t.workspace.Name, untilDirect)
		},
	}
	tf.register(cmd)
	cmd.Flags().IntVarP(&n, "num", "n", 10, "number of pings (with --until-direct: at most)")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "time between pings")
	cmd.Flags().DurationVarP(&timeout, "timeout", "t", pingTimeout, "how long each ping waits for its pong")
	cmd.Flags().BoolVar(&untilDirect, "until-direct", false, "stop at the first pong over a direct path; exit 1 if none comes within -n pings")
	outputFlag(cmd, &format)
	return cmd
}

func roundLatency(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// netcheckWait bounds how long relayReasons waits for the first network
// check, which takes seconds where UDP is blocked (STUN never answers).
const netcheckWait = 5 * time.Second

// relayReasons explains, as far as this side can tell, why the connection
// is relayed.
func (r *root) relayReasons(ctx context.Context, t *workspaceTunnel, tf tunnelFlags) string {
	var reasons []string
	st := t.conn.Status(ctx)
	switch {
	case tf.disableDirect:
		reasons = append(reasons, "you passed --disable-direct")
	case st.BlockEndpoints:
		reasons = append(reasons, "the server blocks direct connections (--block-direct-connections)")
	case !hasSTUN(t.derpMap):
		reasons = append(reasons, "the deployment has no STUN servers (--stun-addresses disable), so neither side",
			"learns its public address; only peers on the same network can connect directly")
	}
	if len(reasons) == 0 {
		reasons = natReasons(awaitNetcheck(ctx, t.conn), func() map[netip.AddrPort]netip.AddrPort {
			return probeMapping(ctx, t.derpMap)
		})
	}
	if len(reasons) == 0 {
		reasons = append(reasons,
			"no direct UDP path works between you and the workspace: a firewall may block UDP on either side,",
			"or both sides are behind NATs that prevent hole punching; run `tether netcheck` on each side")
	}
	return "✘ still relayed through DERP: " + strings.Join(reasons, "\n  ")
}

// natReasons explains a relay by this side's network check, probing the
// NAT's mapping itself where the check could not tell.
func natReasons(nc *tunnel.Netcheck, probe func() map[netip.AddrPort]netip.AddrPort) []string {
	switch {
	case nc == nil:
		return nil
	case !nc.UDP:
		return []string{"no STUN server answered: UDP is blocked on this network (tether netcheck),",
			"so direct connections cannot work from here"}
	case nc.MappingVariesByDestIP == "true":
		return hardNATReason(nil)
	case nc.MappingVariesByDestIP == "":
		if seen := probe(); mappingVaries(seen) == "true" {
			return hardNATReason(seen)
		}
	}
	return nil
}

func hardNATReason(seen map[netip.AddrPort]netip.AddrPort) []string {
	saw := ""
	if len(seen) > 0 {
		var addrs []string
		for _, a := range seen {
			addrs = append(addrs, a.String())
		}
		slices.Sort(addrs)
		saw = " (STUN servers saw " + strings.Join(addrs, ", ") + ")"
	}
	return []string{"this side is behind a hard NAT that maps each destination to a new port" + saw + ",",
		"which only workspaces with a public address can reach directly"}
}

// awaitNetcheck returns the tunnel's first network check, waiting for it
// for at most netcheckWait; nil if there is none by then.
func awaitNetcheck(ctx context.Context, c *tunnel.Conn) *tunnel.Netcheck {
	ctx, cancel := context.WithTimeout(ctx, netcheckWait)
	defer cancel()
	for {
		if nc := c.Status(ctx).Netcheck; nc != nil {
			return nc
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
