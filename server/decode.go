package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tetherdev/tether"
)

// maxBodyBytes bounds every request body the API reads.
const maxBodyBytes = 1 << 20

// decodeJSON reads one JSON object from the request body into v. It refuses
// bodies over maxBodyBytes, unknown fields (a typo should not pass silently),
// trailing data and wrong types, each with a message that names the problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return tether.Errorf(tether.EINVALID, "request body must be JSON (Content-Type: application/json), not %.60q", ct)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// Decode accepts null as an empty request; and Decoder.More, which
	// looks for the next value, says there is none before a stray '}' or
	// ']'. Only an object with nothing but white space after it passes.
	if b = bytes.TrimLeft(b, " \t\r\n"); b[0] != '{' {
		return tether.Errorf(tether.EINVALID, "request body must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tether.Errorf(tether.EINVALID, "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return tether.Errorf(tether.ETOOLARGE, "request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return tether.Errorf(tether.EINVALID, "request body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tether.Errorf(tether.EINVALID, "request body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return &tether.Error{Code: tether.EINVALID, Message: "request body is not valid JSON",
			Detail: fmt.Sprintf("%v (at byte %d)", syntaxErr, syntaxErr.Offset)}
	case errors.As(err, &typeErr):
		return &tether.Error{Code: tether.EINVALID, Message: "request body has a field of the wrong type",
			Detail: fmt.Sprintf("field %q must be %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &tether.Error{Code: tether.EINVALID, Message: "request body has an unknown field",
			Detail: strings.TrimPrefix(err.Error(), "json: ")}
	}
	return &tether.Error{Code: tether.EINVALID, Message: "request body could not be read", Detail: err.Error()}
}
