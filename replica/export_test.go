package replica

import "context"

// StopHeartbeat stops the heartbeat and leaves the row as it is, as a
// replica that hangs or is killed would, and waits until it has stopped.
// Close still works after it.
func (m *Manager) StopHeartbeat() {
	m.hbCancel()
	<-m.hbDone
}

// ListenerPID returns the backend process of the listening connection, for
// tests that break that connection with pg_terminate_backend.
func (m *Manager) ListenerPID() uint32 { return m.listenerPID.Load() }

// CleanUp runs the housekeeping now.
func (m *Manager) CleanUp(ctx context.Context) error { return m.cleanUp(ctx) }

const (
	ForgetAfter      = forgetAfter
	EventRetention   = eventRetention
	MaxNotifyPayload = maxNotifyPayload
)
