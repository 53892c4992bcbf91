// Package templatefile reads template files: the YAML that `tether
// templates push` sends and the dashboard uploads. The CLI parses them before
// sending, and the server parses what the dashboard uploads, with this one
// parser, so that both report a mistake the same way, by its line.
package templatefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tetherdev/tether"
	"gopkg.in/yaml.v3"
)

// MaxSize bounds a template file.
const MaxSize = 1 << 20

// Parse parses and validates the template file called name (for messages)
// whose contents are b. Unknown fields, a second document and invalid
// values are refused, with the line at fault where YAML knows it.
func Parse(name string, b []byte) (tether.PushTemplateRequest, error) {
	var req tether.PushTemplateRequest
	if len(b) > MaxSize {
		return req, fmt.Errorf("template %s is larger than %d bytes", name, MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return req, fmt.Errorf("template %s is empty", name)
		}
		return req, fmt.Errorf("template %s is not valid: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	// Push sends one template: a second document would be dropped
	// without a word.
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return req, fmt.Errorf("template %s has more than one YAML document: push one template per file", name)
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("template %s: %w", name, err)
	}
	return req, nil
}
