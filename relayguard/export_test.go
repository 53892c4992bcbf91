package relayguard

// AdmitURL is the admission controller's secret URL.
func (g *Guard) AdmitURL() string { return g.url }
