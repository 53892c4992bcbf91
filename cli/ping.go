package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/tunnel"
)

// pingJSON is one line of `tether ping --output json`.
type pingJSON struct {
	Seq        int     `json:"seq"`
	Path       string  `json:"path"` // "direct" or "derp"; "timeout" when no pong came
	Endpoint   string  `json:"endpoint,omitempty"`
	DERPRegion string  `json:"derp_region,omitempty"`
	LatencyMS  float64 `json:"latency_ms"`
}

// pingTimeout is how long one ping waits for its pong.
const pingTimeout = 5 * time.Second

func (r *root) pingCommand() *cobra.Command {
	var (
		tf       tunnelFlags
		n        int
		interval time.Duration
		format   string
	)
	cmd := &cobra.Command{
		Use:     "ping WORKSPACE",
		Short:   "Ping a workspace's agent over the tunnel and show the path each pong took",
		Args:    cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 1 {
				return fmt.Errorf("-n must be at least 1")
			}
			ctx := cmd.Context()
			t, err := r.dialWorkspace(ctx, args[0], tf)
			if err != nil {
				return err
			}
			defer t.stop()
			out := r.env.Stdout
			sawDirect := false
			var last *tunnel.PingResult
			for seq := 1; seq <= n; seq++ {
				if seq > 1 {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(interval):
					}
				}
				pctx, cancel := context.WithTimeout(ctx, pingTimeout)
				res, err := t.conn.Ping(pctx, t.agentIP)
				cancel()
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					if format == "json" {
						json.NewEncoder(out).Encode(pingJSON{Seq: seq, Path: "timeout"})
					} else {
						fmt.Fprintf(out, "ping %d: no pong within %s\n", seq, pingTimeout)
					}
					continue
				}
				last = &res
				line := pingJSON{Seq: seq, LatencyMS: float64(res.Latency.Microseconds()) / 1000}
				if res.Direct {
					line.Path, line.Endpoint = "direct", res.Endpoint
				} else {
					line.Path, line.DERPRegion = "derp", res.DERPRegionCode
				}
				if format == "json" {
					json.NewEncoder(out).Encode(line)
					continue
				}
				via := "DERP(" + res.DERPRegionCode + ")"
				if res.Direct {
					via = res.Endpoint
				}
				fmt.Fprintf(out, "pong from %s via %s in %s\n", t.workspace.Name, via, roundLatency(res.Latency))
				if res.Direct && !sawDirect {
					sawDirect = true
					fmt.Fprintln(out, "✔ p2p connection established")
				}
			}
			if format == "text" && last != nil && !last.Direct {
				fmt.Fprintln(out, r.relayReasons(ctx, t, tf))
			}
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().IntVarP(&n, "num", "n", 10, "number of pings")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "time between pings")
	outputFlag(cmd, &format)
	return cmd
}

func roundLatency(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

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
	}
	if nc := st.Netcheck; nc != nil && len(reasons) == 0 {
		switch {
		case !nc.UDP:
			reasons = append(reasons, "no STUN server answered: UDP out is blocked here, or the deployment has no STUN servers (tether netcheck)")
		case nc.MappingVariesByDestIP == "true":
			reasons = append(reasons, "this side is behind a hard NAT that changes ports per destination")
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons,
			"no direct UDP path works between you and the workspace: a firewall may block UDP on either side,",
			"or both sides are behind NATs that prevent hole punching; run `tether netcheck` on each side")
	}
	return "✘ still relayed through DERP: " + strings.Join(reasons, "\n  ")
}
