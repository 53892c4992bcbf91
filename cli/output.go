package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherdev/tether/client"
)

// outputFlag adds --output to a command that prints data.
func outputFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "output", "o", "text", "output format: text or json")
}

// checkOutput validates an --output value before a command does any work.
func checkOutput(format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("--output must be text or json, not %q", format)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// listing is what a list command prints: the items fetch returns, as
// JSON (--output json) or as a table under header with a row of cells for
// each item. empty, when set, is said instead of a table with no rows.
type listing[T any] struct {
	fetch  func(ctx context.Context, c *client.Client) ([]T, error)
	header string // the columns' titles, separated by tabs
	row    func(item T, now time.Time) []string
	empty  string
}

// listingCommand completes cmd, which has its name and help, as a command
// that prints l and takes --output.
func listingCommand[T any](r *root, cmd *cobra.Command, l listing[T]) *cobra.Command {
	var format string
	cmd.PreRunE = func(*cobra.Command, []string) error { return checkOutput(format) }
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := r.client()
		if err != nil {
			return err
		}
		items, err := l.fetch(cmd.Context(), c)
		if err != nil {
			return err
		}
		if format == "json" {
			return writeJSON(r.env.Stdout, items)
		}
		if len(items) == 0 && l.empty != "" {
			fmt.Fprintln(r.env.Stdout, l.empty)
			return nil
		}
		now := time.Now()
		rows := make([][]string, 0, len(items))
		for _, it := range items {
			rows = append(rows, l.row(it, now))
		}
		return table(r.env.Stdout, l.header, rows)
	}
	outputFlag(cmd, &format)
	return cmd
}

// ago renders a past time relative to now: "12s ago", "3m ago", "never".
func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(*t)
	switch {
	case d < 5*time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}
