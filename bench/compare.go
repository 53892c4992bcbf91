package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// loadRecord reads a run saved by save.
func loadRecord(path string) (record, error) {
	var rec record
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// compareRecords prints every measure of two runs side by side, with the
// change and whether it is for the better. One run per side has no
// confidence interval: for that, save several runs and use benchstat on
// their .txt files.
func compareRecords(w io.Writer, old, cur record) {
	fmt.Fprintf(w, "old: %s %s (load %s)\nnew: %s %s (load %s)\n",
		short(old.Commit), old.Time.Format("2006-01-02 15:04"), old.LoadAvg[0],
		short(cur.Commit), cur.Time.Format("2006-01-02 15:04"), cur.LoadAvg[0])
	prev := map[string]measure{}
	for _, m := range old.Measures {
		prev[m.Name] = m
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tOLD\tNEW\tCHANGE\t")
	seen := map[string]bool{}
	for _, m := range cur.Measures {
		seen[m.Name] = true
		o, ok := prev[m.Name]
		if !ok {
			fmt.Fprintf(tw, "%s\t—\t%s\t\t\n", m.Name, formatValue(m.Value, m.Unit))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", m.Name, formatValue(o.Value, o.Unit), formatValue(m.Value, m.Unit), change(o.Value, m.Value, m.Better))
	}
	for _, m := range old.Measures {
		if !seen[m.Name] {
			fmt.Fprintf(tw, "%s\t%s\t—\t\t\n", m.Name, formatValue(m.Value, m.Unit))
		}
	}
	tw.Flush()
}

// change is the relative change from old to cur, marked better or worse.
func change(old, cur float64, better string) string {
	if old == 0 {
		return ""
	}
	d := (cur - old) / old
	verdict := "better"
	if (d < 0) == (better == "higher") {
		verdict = "worse"
	}
	if d == 0 {
		verdict = "same"
	}
	return fmt.Sprintf("%+.1f%% %s", d*100, verdict)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
