package tether

import (
	"errors"
	"fmt"
)

// Error codes name the kinds of failure that callers tell apart. The HTTP
// server maps each to one status code (server/error.go) and the CLI maps each
// to one message style; nothing else inspects them.
const (
	ECONFLICT       = "conflict"        // the thing already exists
	EINTERNAL       = "internal"        // a bug or an unexpected failure
	EINVALID        = "invalid"         // the request is malformed or breaks a rule
	ENOTFOUND       = "not_found"       // no such thing, or not visible to the caller
	EUNAUTHORIZED   = "unauthorized"    // no credentials, or bad ones
	EFORBIDDEN      = "forbidden"       // credentials are good, permission is not
	ETOOLARGE       = "too_large"       // the request body is over the limit
	EUNAVAILABLE    = "unavailable"     // the thing exists but cannot serve now
	EBROWSERONLY    = "browser_only"    // the deployment allows browser access only
	ENOTIMPLEMENTED = "not_implemented" // the server does not offer this
	ETOOMANY        = "too_many"        // too many attempts: wait and try again
	ESTORAGEFULL    = "storage_full"    // the server's database is out of space; nothing was saved
)

// Error is an error that carries a code and a message meant for a person.
// Detail, when set, says more (which field, which value) without repeating
// the message.
type Error struct {
	Code    string
	Message string
	Detail  string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Message + ": " + e.Detail
	}
	return e.Message
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the human message of the first *Error in err's chain,
// or a generic message for other errors so that internals never leak.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
