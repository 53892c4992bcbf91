package server

import (
	"net/http"
	"strconv"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// List endpoints answer a page at a time (see tether.DefaultPageSize): a
// deployment with thousands of workspaces must not build, send and parse
// megabytes per call.

// readPage reads ?limit= and ?after= for a list endpoint. It asks the store
// for one item more than the page holds, to learn whether another page
// follows.
func readPage(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{After: q.Get("after"), Limit: tether.DefaultPageSize}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > tether.MaxPageSize {
			return p, tether.Errorf(tether.EINVALID, "limit %q must be a number from 1 to %d", v, tether.MaxPageSize)
		}
		p.Limit = n
	}
	if len(p.After) > 2*tether.MaxNameLength+1 {
		return p, tether.Errorf(tether.EINVALID, "after %q is not a cursor this server gave", p.After)
	}
	p.Limit++
	return p, nil
}

// pageEnd trims the extra item that readPage asked for and, when there was
// one, links to the next page, whose cursor is the key of the page's last
// item.
func pageEnd[T any](w http.ResponseWriter, r *http.Request, p store.Page, items []T, key func(T) string) []T {
	if len(items) < p.Limit {
		return items
	}
	items = items[:p.Limit-1]
	q := r.URL.Query()
	q.Set("after", key(items[len(items)-1]))
	q.Set("limit", strconv.Itoa(p.Limit-1))
	w.Header().Set("Link", "<?"+q.Encode()+`>; rel="next"`)
	return items
}
