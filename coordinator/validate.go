package coordinator

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// maxNodeSize is the largest node, JSON-encoded, that the coordinator
// accepts. A node that filled a whole request would not fit in the response
// that forwards it (the response adds the peer ID and kind), and a peer can
// make its node grow on re-encoding (Go escapes '<' in map keys as \u003c),
// so the check is on the encoding the coordinator will send.
const maxNodeSize = tether.MaxCoordinateMessage - 512

// validateNode reports whether n is a node the peer with the given ID may
// publish and the coordinator can forward.
func validateNode(id uuid.UUID, n *tether.Node) error {
	if err := n.Validate(id); err != nil {
		return err
	}
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node: %w", err)
	}
	if len(b) > maxNodeSize {
		return fmt.Errorf("node is %d bytes encoded, more than %d", len(b), maxNodeSize)
	}
	return nil
}
