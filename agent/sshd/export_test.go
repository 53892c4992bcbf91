package sshd

// SetBeforeOutputRead makes every copy of a session's output call fn before
// each read, with the number of reads that copy has done, so that a test
// can delay the copy as a starving scheduler would. Call it before Serve.
func SetBeforeOutputRead(s *Server, fn func(reads int)) { s.beforeOutputRead = fn }

// SetBeforeStartReply makes the server call fn before it answers a request
// that started a program, as a slow request goroutine would delay the
// answer. Call it before Serve.
func SetBeforeStartReply(s *Server, fn func()) { s.beforeStartReply = fn }
