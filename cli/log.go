package cli

import (
	"io"
	"log/slog"

	"github.com/tetherdev/tether/internal/logging"
)

// newLogger returns a text logger at the named level, for commands that
// log what their tunnel does (--log-level).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return logging.New(w, level, logging.FormatText)
}
