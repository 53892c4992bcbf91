package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tetherdev/tether/client"
)

// testTimeout bounds every test; nothing waits on fixed sleeps.
const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newAgent returns an Agent whose server is handler, as Run would leave
// it for the parts it starts (a.ctx set to the test's context).
func newAgent(t *testing.T, handler http.Handler) *Agent {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.AgentToken = "agent-token"
	a, err := New(Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	a.ctx = testContext(t)
	return a
}

// recorder is a server endpoint that hands each request's JSON body to
// the test, and answers with status.
func recorder[T any](t *testing.T, status func() int) (http.HandlerFunc, <-chan T) {
	got := make(chan T, 100)
	return func(w http.ResponseWriter, r *http.Request) {
		var v T
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			t.Errorf("%s %s: %v", r.Method, r.URL.Path, err)
		}
		got <- v
		w.WriteHeader(status())
	}, got
}

func ok() int { return http.StatusNoContent }

// next returns what the channel receives next, failing the test at ctx's
// end.
func next[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
