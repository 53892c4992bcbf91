package storemetrics_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tetherdev/tether/internal/metrics/metricstest"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/sqlite"
	"github.com/tetherdev/tether/store/storemetrics"
	"github.com/tetherdev/tether/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance: the wrapped store is still a store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return storemetrics.New(db, prometheus.NewRegistry())
	})
}

// failing is a store whose every method fails: it embeds no store at all,
// so each call panics, which the wrapper records on its way out.
type failing struct{ store.Store }

// TestEveryMethodMeasured calls every method of store.Store through the
// wrapper and checks that each call was measured: a method added to
// store.Store without its wrapper in methods.go fails here.
func TestEveryMethodMeasured(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := storemetrics.New(failing{}, reg)
	iface := reflect.TypeFor[store.Store]()
	v := reflect.ValueOf(s)
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if m.Name == "Close" {
			continue
		}
		args := make([]reflect.Value, m.Type.NumIn())
		for j := range args {
			args[j] = reflect.Zero(m.Type.In(j))
		}
		func() {
			defer func() { recover() }()
			v.MethodByName(m.Name).Call(args)
		}()
		n, ok, err := metricstest.Value(reg, "tether_store_query_duration_seconds", "method", m.Name)
		if err != nil || !ok || n != 1 {
			t.Errorf("store.Store.%s is not measured (add it to storemetrics/methods.go)", m.Name)
		}
	}
}

func TestErrorsCounted(t *testing.T) {
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	s := storemetrics.New(db, reg)
	ctx := context.Background()
	if _, err := s.UserByLogin(ctx, "nobody"); err == nil {
		t.Fatal("found a user in an empty store")
	}
	db.Close()
	if _, err := s.CountUsers(ctx); err == nil {
		t.Fatal("a closed store answered")
	}
	tests := []struct {
		method string
		want   float64
	}{
		{"UserByLogin", 0}, // not found is an answer
		{"CountUsers", 1},
	}
	for _, tt := range tests {
		got, _, _ := metricstest.Value(reg, "tether_store_query_errors_total", "method", tt.method)
		if got != tt.want {
			t.Errorf("errors of %s: %v, want %v", tt.method, got, tt.want)
		}
	}
}
