package mailbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 10 * time.Second

func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestMailbox(t *testing.T) {
	var m Mailbox[*int]
	if m.Get() != nil {
		t.Fatal("an empty mailbox holds a value")
	}
	if woken(m.Changed()) {
		t.Fatal("an empty mailbox wakes its reader")
	}

	// Puts without a reader never block, and the reader wakes once for
	// all of them and reads the newest.
	vals := []int{1, 2, 3}
	for i := range vals {
		m.Put(&vals[i])
	}
	if !woken(m.Changed()) {
		t.Fatal("Put did not wake the reader")
	}
	if got := m.Get(); got != &vals[2] {
		t.Fatalf("Get = %v, want the last value put", *got)
	}
	if woken(m.Changed()) {
		t.Error("three Puts woke the reader more than once")
	}

	// Get does not take the value: it stays until replaced.
	if m.Get() != &vals[2] {
		t.Error("Get emptied the mailbox")
	}

	// A Put after Get and before the wait leaves its wake-up pending.
	_ = m.Get()
	m.Put(&vals[0])
	if !woken(m.Changed()) || m.Get() != &vals[0] {
		t.Error("a Put between Get and the wait was missed")
	}
}

// TestReaderSeesLast runs writers against a slow reader: the reader must
// end up with the last value written, however the wake-ups fall.
func TestReaderSeesLast(t *testing.T) {
	var m Mailbox[int]
	const writers, each = 4, 1000
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				m.Put(w*each + i)
			}
		})
	}
	go func() {
		wg.Wait()
		m.Put(-1)
		close(done)
	}()
	deadline := time.After(testTimeout)
	for {
		if m.Get() == -1 {
			break
		}
		select {
		case <-m.Changed():
		case <-deadline:
			t.Fatalf("the reader never saw the last value; it holds %d", m.Get())
		}
	}
	<-done
}

// TestNext: Next returns a value only once it is new (not the zero value,
// not the one the reader had), waits for a Put otherwise, and gives up
// with its context.
func TestNext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var m Mailbox[*int]
	one, two := 1, 2

	// Nothing yet: it waits until its context ends.
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	defer stop()
	if _, err := Next(short, &m, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an empty mailbox = %v, want the context's deadline", err)
	}

	m.Put(&one)
	if got, err := Next(ctx, &m, nil); err != nil || got != &one {
		t.Fatalf("Next = %v, %v; want the value put", got, err)
	}
	// The same value again is not new: Next waits for the next Put.
	got := make(chan *int, 1)
	go func() {
		v, _ := Next(ctx, &m, &one)
		got <- v
	}()
	m.Put(&one) // a wake-up with nothing new
	select {
	case v := <-got:
		t.Fatalf("Next returned %v, which the reader had", *v)
	case <-time.After(20 * time.Millisecond):
	}
	m.Put(&two)
	if v := <-got; v != &two {
		t.Fatalf("Next = %v, want the newer value", *v)
	}
}
