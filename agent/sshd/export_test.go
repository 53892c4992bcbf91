package sshd

// SetBeforeOutputRead makes every copy of a session's output call fn before
// each read, with the number of reads that copy has done, so that a test
// can delay the copy as a starving scheduler would. Call it before Serve.
func SetBeforeOutputRead(s *Server, fn func(reads int)) { s.beforeOutputRead = fn }
