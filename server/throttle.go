package server

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sign-in throttling. Failed sign-ins are counted in token buckets, per
// account and per source address; a bucket that is empty refuses further
// attempts (429, with Retry-After) until it refills, before the password is
// even checked. Successful sign-ins count nothing and reset nothing: a
// reset would let anyone who can sign in to some account (an attacker's
// own, from the attacker's address) or the victim signing in to theirs
// hand the attacker a fresh budget.
//
// The account is the name or address as typed (trimmed, lowercased),
// whether or not such a user exists, so that the throttle's answers do not
// tell which users exist.
//
// An attacker can drain an account's bucket and so slow down its owner's
// sign-ins too. To keep that from locking a person out, a source address
// that signed in to an account before (within knownSourceFor) is counted
// in a bucket of its own for that account instead of the account's shared
// one: the owner signing in from their usual address is throttled only by
// their own mistakes. Sessions already signed in are never affected.
//
// The numbers are generous, so that people and tests never meet them by
// mistake: 10 failures per account at once, then one a minute; 50 per
// address at once (an office behind one address), then one every 6 s.
const (
	accountBurst   = 10
	accountRefill  = time.Minute
	sourceBurst    = 50
	sourceRefill   = 6 * time.Second
	knownSourceFor = 30 * 24 * time.Hour
	// maxThrottleEntries bounds each map: failures under names that do
	// not exist must not grow memory without end.
	maxThrottleEntries = 100_000
)

// bucket counts one key's failures.
type bucket struct {
	lim  *rate.Limiter
	last time.Time // of the last failure
}

// buckets is a bounded set of buckets that all refill alike.
type buckets struct {
	burst  int
	refill time.Duration
	m      map[string]*bucket
}

func newBuckets(burst int, refill time.Duration) buckets {
	return buckets{burst: burst, refill: refill, m: map[string]*bucket{}}
}

// wait returns how long key must wait before its next attempt: zero if it
// has an attempt left.
func (b *buckets) wait(key string, now time.Time) time.Duration {
	bk := b.m[key]
	if bk == nil {
		return 0
	}
	tokens := bk.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - tokens) * float64(b.refill)))
}

// fail counts a failure of key.
func (b *buckets) fail(key string, now time.Time) {
	bk := b.m[key]
	if bk == nil {
		if len(b.m) >= maxThrottleEntries {
			b.sweep(now)
		}
		bk = &bucket{lim: rate.NewLimiter(rate.Every(b.refill), b.burst)}
		b.m[key] = bk
	}
	bk.lim.AllowN(now, 1)
	bk.last = now
}

// sweep drops buckets that are full again, which are as good as none, and
// if that is not enough, the one idle longest.
func (b *buckets) sweep(now time.Time) {
	full := time.Duration(b.burst) * b.refill
	var oldest string
	for k, bk := range b.m {
		if now.Sub(bk.last) >= full {
			delete(b.m, k)
		} else if oldest == "" || bk.last.Before(b.m[oldest].last) {
			oldest = k
		}
	}
	if len(b.m) >= maxThrottleEntries && oldest != "" {
		delete(b.m, oldest)
	}
}

// loginThrottle holds the buckets of sign-in failures.
type loginThrottle struct {
	mu       sync.Mutex
	accounts buckets              // by account
	pairs    buckets              // by account and a source it signed in from before
	sources  buckets              // by source
	known    map[string]time.Time // account and source → last successful sign-in
}

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{
		accounts: newBuckets(accountBurst, accountRefill),
		pairs:    newBuckets(accountBurst, accountRefill),
		sources:  newBuckets(sourceBurst, sourceRefill),
		known:    map[string]time.Time{},
	}
}

// accountKey is how the throttle names an account.
func accountKey(login string) string {
	return strings.ToLower(strings.TrimSpace(login))
}

// accountBucketLocked returns the buckets and key that count account's
// failures from source.
func (t *loginThrottle) accountBucketLocked(account, source string, now time.Time) (*buckets, string) {
	pair := account + "\x00" + source
	if at, ok := t.known[pair]; ok && now.Sub(at) < knownSourceFor {
		return &t.pairs, pair
	}
	return &t.accounts, account
}

// check returns how long a sign-in to account from source must wait; zero
// if it may go ahead.
func (t *loginThrottle) check(account, source string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, key := t.accountBucketLocked(account, source, now)
	return max(b.wait(key, now), t.sources.wait(source, now))
}

// failed counts a failed sign-in.
func (t *loginThrottle) failed(account, source string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, key := t.accountBucketLocked(account, source, now)
	b.fail(key, now)
	t.sources.fail(source, now)
}

// succeeded remembers that source signs in to account. It resets no
// bucket (see above).
func (t *loginThrottle) succeeded(account, source string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.known) >= maxThrottleEntries {
		for k, at := range t.known {
			if now.Sub(at) >= knownSourceFor {
				delete(t.known, k)
			}
		}
		if len(t.known) >= maxThrottleEntries {
			return // remembering is a convenience; the limits still hold
		}
	}
	t.known[account+"\x00"+source] = now
}

// clientAddress returns the address a request comes from, as the throttle
// and the logs name it: the connection's peer, or, when that peer is a
// trusted reverse proxy, the address it says it forwarded for (the last one
// in X-Forwarded-For that is not a trusted proxy itself). X-Forwarded-For
// from anyone else is ignored: any client can write one.
func clientAddress(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := remoteAddr(r)
	if !isTrusted(peer, trusted) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap()
		if !isTrusted(client, trusted) {
			break
		}
	}
	return client
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sourceKey is how the throttle names an address: IPv6 clients by their
// /64, since one host usually holds a whole /64.
func sourceKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// retryAfter renders a wait for a person.
func retryAfter(d time.Duration) string {
	secs := int(math.Ceil(d.Seconds()))
	switch {
	case secs <= 1:
		return "a second"
	case secs < 60:
		return strconv.Itoa(secs) + " seconds"
	case secs < 120:
		return "a minute"
	default:
		return strconv.Itoa((secs+59)/60) + " minutes"
	}
}
