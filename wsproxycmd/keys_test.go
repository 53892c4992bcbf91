package wsproxycmd

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
)

// fakePrimary answers the node-key question: known keys are those in
// known; it counts the questions and records the waits asked for.
func fakePrimary(t *testing.T, token string, known map[string]bool) (*primaryKeys, *atomic.Int64, *atomic.Value) {
	t.Helper()
	var asked atomic.Int64
	var lastWait atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(tether.ProxyTokenHeader) != token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		asked.Add(1)
		lastWait.Store(r.URL.Query().Get("wait_ms"))
		k := strings.TrimPrefix(r.URL.Path, "/api/v2/workspaceproxies/me/node-keys/")
		json.NewEncoder(w).Encode(tether.NodeKeyKnown{Known: known[k]})
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return &primaryKeys{hc: srv.Client(), primary: u, token: token}, &asked, &lastWait
}

func TestPrimaryKeys(t *testing.T) {
	good, bad := key.NewNode().Public(), key.NewNode().Public()
	goodText, _ := good.MarshalText()
	tests := []struct {
		name      string
		token     string // the proxy's token; the fake primary knows "right"
		k         key.NodePublic
		want      bool
		wantAsked int64 // questions after asking twice
	}{
		{"known key, asked once then cached", "right", good, true, 1},
		{"unknown key, asked every time", "right", bad, false, 2},
		{"refused token, never admitted", "wrong", good, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, asked, _ := fakePrimary(t, "right", map[string]bool{string(goodText): true})
			keys.token = tt.token
			for range 2 {
				if got := keys.KnowsNodeKey(tt.k); got != tt.want {
					t.Fatalf("KnowsNodeKey = %v, want %v", got, tt.want)
				}
			}
			if n := asked.Load(); n != tt.wantAsked {
				t.Errorf("the primary was asked %d times, want %d", n, tt.wantAsked)
			}
		})
	}
}

// TestPrimaryKeysAwait: the wait asked of the primary stays within the
// caller's deadline.
func TestPrimaryKeysAwait(t *testing.T) {
	keys, _, lastWait := fakePrimary(t, "right", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if keys.AwaitNodeKey(ctx, key.NewNode().Public()) {
		t.Fatal("AwaitNodeKey admitted a key the primary does not know")
	}
	w, _ := lastWait.Load().(string)
	if ms, err := strconv.Atoi(w); err != nil || ms <= 0 || ms >= 1000 {
		t.Errorf("asked the primary to wait %q ms, want more than 0 and less than the caller's second", w)
	}
}
