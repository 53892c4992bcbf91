package rtcterm

// SetLoopback makes s gather loopback candidates too, for tests on
// machines whose only interface is loopback. Call it before Serve.
func SetLoopback(s *Server) { s.loopback = true }
