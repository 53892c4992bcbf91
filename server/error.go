package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// statusCodes maps error codes to HTTP statuses. This is the only place
// where the API decides a status from an error.
var statusCodes = map[string]int{
	tether.ECONFLICT:       http.StatusConflict,
	tether.EINTERNAL:       http.StatusInternalServerError,
	tether.EINVALID:        http.StatusBadRequest,
	tether.ENOTFOUND:       http.StatusNotFound,
	tether.EUNAUTHORIZED:   http.StatusUnauthorized,
	tether.EFORBIDDEN:      http.StatusForbidden,
	tether.ETOOLARGE:       http.StatusRequestEntityTooLarge,
	tether.EUNAVAILABLE:    http.StatusServiceUnavailable,
	tether.EBROWSERONLY:    http.StatusForbidden,
	tether.ENOTIMPLEMENTED: http.StatusNotImplemented,
	tether.ETOOMANY:        http.StatusTooManyRequests,
	tether.ESTORAGEFULL:    http.StatusInsufficientStorage,
}

// storeError gives store sentinels a user-facing code. what names the thing
// looked up, for the message.
func storeError(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tether.Errorf(tether.ENOTFOUND, "%s not found", what)
	case errors.Is(err, store.ErrConflict):
		return tether.Errorf(tether.ECONFLICT, "%s already exists", what)
	}
	return err
}

// writeError writes err as a JSON ErrorResponse with its status. Internal
// errors are logged and replaced by a generic message so that no internal
// detail reaches the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrStorageFull) {
		// Whichever write hit it, it was not made, and the operator must
		// act: say so to both.
		s.logger.Error("the database is full: free disk space (or grow the database's volume); writes fail until then",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		err = tether.Errorf(tether.ESTORAGEFULL, "the server's database is out of space, so nothing was saved: try again later, or tell the server's operator (its log says more)")
	}
	code := tether.ErrorCode(err)
	resp := tether.ErrorResponse{Message: tether.ErrorMessage(err), Code: code}
	var te *tether.Error
	if errors.As(err, &te) {
		resp.Detail = te.Detail
	}
	if code == tether.EINTERNAL {
		s.logger.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		resp.Message = "internal server error"
	}
	status, ok := statusCodes[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tether"`)
	}
	if wantsHTML(r) {
		s.writeErrorPage(w, status, resp)
		return
	}
	writeJSON(w, status, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
