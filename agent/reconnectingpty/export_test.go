package reconnectingpty

// SessionCount returns how many sessions the server holds.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
