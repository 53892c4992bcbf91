package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
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

	list := listingCommand(r, &cobra.Command{
		Use:   "list",
		Short: "List templates",
		Args:  cobra.NoArgs,
	}, listing[tether.Template]{
		fetch: func(ctx context.Context, c *client.Client) ([]tether.Template, error) {
			return c.Templates(ctx)
		},
		header: "NAME\tAGENT URL\tAPPS",
		row: func(t tether.Template, _ time.Time) []string {
			names := make([]string, 0, len(t.Apps))
			for _, a := range t.Apps {
				names = append(names, a.Name)
			}
			agentURL := t.AgentURL
			if agentURL == "" {
				agentURL = "(access URL)"
			}
			return []string{t.Name, agentURL, strings.Join(names, ",")}
		},
	})
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
