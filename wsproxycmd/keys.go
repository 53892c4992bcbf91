package wsproxycmd

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
)

// primaryKeys is relay.Keys for the proxy's relay: the coordinator that
// knows the deployment's peers is the primary's, so the relay asks it. A
// key it confirmed is trusted for knownFor without asking again: the
// relay's warden asks about every client every few seconds, and a peer
// that left is closed by the warden a grace period later anyway.
type primaryKeys struct {
	hc      *http.Client
	primary *url.URL
	token   string

	mu    sync.Mutex
	known map[key.NodePublic]time.Time // when each was last confirmed; guarded by mu
}

const (
	knownFor = 20 * time.Second
	// askTimeout bounds one question when the caller gives no deadline.
	askTimeout = 5 * time.Second
)

func (k *primaryKeys) KnowsNodeKey(nk key.NodePublic) bool {
	if k.cached(nk) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	return k.ask(ctx, nk, 0)
}

func (k *primaryKeys) AwaitNodeKey(ctx context.Context, nk key.NodePublic) bool {
	if k.cached(nk) {
		return true
	}
	wait := 3 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-200*time.Millisecond)
	}
	return k.ask(ctx, nk, max(wait, 0))
}

func (k *primaryKeys) cached(nk key.NodePublic) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.known[nk]
	return ok && time.Since(t) < knownFor
}

// ask asks the primary, which waits up to wait for the key to become known.
func (k *primaryKeys) ask(ctx context.Context, nk key.NodePublic, wait time.Duration) bool {
	text, err := nk.MarshalText()
	if err != nil {
		return false
	}
	u := *k.primary
	u.Path = "/api/v2/workspaceproxies/me/node-keys/" + string(text)
	u.RawQuery = "wait_ms=" + strconv.FormatInt(wait.Milliseconds(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	req.Header.Set(tether.ProxyTokenHeader, k.token)
	res, err := k.hc.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var v tether.NodeKeyKnown
	if res.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&v) != nil || !v.Known {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.known == nil {
		k.known = map[key.NodePublic]time.Time{}
	}
	for old, t := range k.known {
		if time.Since(t) >= knownFor {
			delete(k.known, old)
		}
	}
	k.known[nk] = time.Now()
	return true
}
