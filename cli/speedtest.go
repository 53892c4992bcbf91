package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/speedtest"
	"github.com/tetherdev/tether/tunnel"
)

func (r *root) speedtestCommand() *cobra.Command {
	var (
		tf        tunnelFlags
		duration  time.Duration
		direction string
		format    string
	)
	cmd := &cobra.Command{
		Use:   "speedtest WORKSPACE",
		Short: "Measure throughput to or from a workspace over the tunnel",
		Args:  cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if direction != string(speedtest.Down) && direction != string(speedtest.Up) {
				return fmt.Errorf("--direction must be up or down, not %q", direction)
			}
			if duration < 100*time.Millisecond || duration > 5*time.Minute {
				return fmt.Errorf("-t must be between 100ms and 5m, not %s", duration)
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
			var pong *tunnel.PingResult
			path := "unknown"
			if res, err := t.conn.Ping(ctx, t.agentIP); err == nil {
				pong = &res
				path = viaText(res)
				if res.Direct {
					path = "direct " + res.Endpoint
				}
			}
			conn, err := t.dial(ctx, tether.AgentSpeedtestPort)
			if err != nil {
				return fmt.Errorf("connect to the workspace's speed test: %w", err)
			}
			if format == "text" {
				fmt.Fprintf(r.env.Stdout, "Speed test %s %s for %s via %s\n", direction, t.workspace.Name, duration, path)
			}
			res, err := speedtest.Run(ctx, conn, speedtest.Config{Direction: speedtest.Direction(direction), Duration: duration})
			if err != nil {
				return fmt.Errorf("speed test: %w", err)
			}
			if format == "json" {
				return writeJSON(r.env.Stdout, speedtestOutput(res, pong))
			}
			rows := make([][]string, 0, len(res.Intervals)+1)
			for _, iv := range res.Intervals {
				rows = append(rows, []string{
					fmt.Sprintf("%.2f-%.2f s", iv.Start.Seconds(), iv.End.Seconds()),
					formatBytes(iv.Bytes), formatRate(iv.Throughput()),
				})
			}
			rows = append(rows, []string{"total", formatBytes(res.Bytes), formatRate(res.Throughput())})
			return table(r.env.Stdout, "INTERVAL\tTRANSFER\tTHROUGHPUT", rows)
		},
	}
	tf.register(cmd)
	cmd.Flags().DurationVarP(&duration, "time", "t", 5*time.Second, "how long to send")
	cmd.Flags().StringVar(&direction, "direction", "down", "down (workspace to you) or up (you to workspace)")
	outputFlag(cmd, &format)
	return cmd
}

// speedtestOutput is what `tether speedtest --output json` prints of res;
// pong is the ping before the test, nil if none came back.
func speedtestOutput(res speedtest.Result, pong *tunnel.PingResult) tether.SpeedtestOutput {
	out := tether.SpeedtestOutput{
		Direction:           string(res.Direction),
		Path:                tether.PathUnknown,
		Bytes:               res.Bytes,
		DurationS:           res.Duration.Seconds(),
		ThroughputBytesPerS: res.Throughput(),
		Intervals:           make([]tether.SpeedtestInterval, 0, len(res.Intervals)),
	}
	if pong != nil {
		out.Path, out.Endpoint, out.DERPRegion = pathOf(*pong)
	}
	for _, iv := range res.Intervals {
		out.Intervals = append(out.Intervals, tether.SpeedtestInterval{
			StartS:              iv.Start.Seconds(),
			EndS:                iv.End.Seconds(),
			Bytes:               iv.Bytes,
			ThroughputBytesPerS: iv.Throughput(),
		})
	}
	return out
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// formatRate shows bytes per second as MB/s and Mbit/s.
func formatRate(bps float64) string {
	return fmt.Sprintf("%.1f MB/s (%.0f Mbit/s)", bps/1e6, bps*8/1e6)
}
