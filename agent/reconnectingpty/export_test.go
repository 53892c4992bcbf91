package reconnectingpty

// SessionCount returns how many sessions the server holds.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// SetBeforeOutputRead makes every session's output reader call fn before
// each read, with the number of reads it has done, so that a test can
// delay it as a starving scheduler would. Call it before Serve.
func SetBeforeOutputRead(s *Server, fn func(reads int)) { s.beforeOutputRead = fn }

// SetBeforeStart makes every new session call fn with its id before its
// process starts, so that a test can hold a start up, or fail it with
// fn's error. Call it before Serve.
func SetBeforeStart(s *Server, fn func(id string) error) { s.beforeStart = fn }
