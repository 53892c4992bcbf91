package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/templatefile"
)

func (r *root) templatesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "templates", Short: "Manage templates"}
	var file string
	push := &cobra.Command{
		Use:   "push -f FILE.yaml",
		Short: "Create a template or replace the one with the same name",
		Long: "Create a template from a YAML file, or replace the one with the same name:\n\n" +
			"  name: python-dev\n" +
			"  agent_url: https://tether.internal.example.com  # optional, overrides the access URL for agents\n" +
			"  apps:\n" +
			"    - name: web\n" +
			"      url: http://127.0.0.1:8080\n" +
			"      subdomain: false\n" +
			"      share: owner           # owner | authenticated | public\n" +
			"      healthcheck: {url: http://127.0.0.1:8080/healthz, interval: 5s}",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := readTemplate(file, r.env.Stdin)
			if err != nil {
				return err
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			t, err := c.PushTemplate(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Pushed template %s (%d apps).\n", t.Name, len(t.Apps))
			return nil
		},
	}
	push.Flags().StringVarP(&file, "file", "f", "", "template file (YAML); - for stdin")
	push.MarkFlagRequired("file")

	var format string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List templates",
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			ts, err := c.Templates(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(r.env.Stdout, ts)
			}
			rows := make([][]string, 0, len(ts))
			for _, t := range ts {
				names := make([]string, 0, len(t.Apps))
				for _, a := range t.Apps {
					names = append(names, a.Name)
				}
				agentURL := t.AgentURL
				if agentURL == "" {
					agentURL = "(access URL)"
				}
				rows = append(rows, []string{t.Name, agentURL, strings.Join(names, ",")})
			}
			return table(r.env.Stdout, "NAME\tAGENT URL\tAPPS", rows)
		},
	}
	outputFlag(list, &format)
	cmd.AddCommand(push, list)
	return cmd
}

// readTemplate parses and validates a template file, so that mistakes are
// reported with the file's line numbers before anything is sent.
func readTemplate(path string, stdin io.Reader) (tether.PushTemplateRequest, error) {
	var req tether.PushTemplateRequest
	var src io.Reader = stdin
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return req, fmt.Errorf("read template: %w", err)
		}
		defer f.Close()
		src, name = f, path
	}
	b, err := io.ReadAll(io.LimitReader(src, templatefile.MaxSize+1))
	if err != nil {
		return req, fmt.Errorf("read template %s: %w", name, err)
	}
	if len(b) > templatefile.MaxSize {
		return req, fmt.Errorf("template %s is larger than %d bytes", name, templatefile.MaxSize)
	}
	return templatefile.Parse(name, b)
}
