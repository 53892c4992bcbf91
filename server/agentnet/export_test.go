package agentnet

import "github.com/google/uuid"

// tunnelID returns the ID of the server's open tunnel to agentID, or
// uuid.Nil when it has none.
func (n *Net) tunnelID(agentID uuid.UUID) uuid.UUID {
	n.mu.Lock()
	p := n.peers[agentID]
	n.mu.Unlock()
	if p == nil {
		return uuid.Nil
	}
	<-p.ready
	if p.conn == nil {
		return uuid.Nil
	}
	return p.conn.ID()
}
