package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

// TestInterruptedExitsQuietly: a command stopped by Ctrl-C while it waits
// (here, for the server) exits with 130 and prints nothing; SIGTERM with
// 143.
func TestInterruptedExitsQuietly(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			waiting := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				waiting <- struct{}{}
				<-r.Context().Done()
			}))
			defer srv.Close()
			go func() {
				<-waiting
				cancel(&Interrupted{Signal: tc.sig})
			}()
			env, stdout, stderr := testEnv()
			code := Run(ctx, Root(env), env, []string{"list", "--url", srv.URL, "--session-token", "t", "--config-dir", t.TempDir()})
			if code != tc.code || stdout.Len()+stderr.Len() > 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and nothing printed", code, stdout, stderr, tc.code)
			}
		})
	}
}
