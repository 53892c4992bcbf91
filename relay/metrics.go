package relay

import (
	"bufio"
	"bytes"
	"expvar"
	"io"
	"regexp"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The relay's metrics are the library's own counters (derpserver's
// ExpVar, and its drop counters published through expvar), read when
// Prometheus scrapes and renamed to Tether's conventions: nothing is
// counted twice.

// derpVars maps derpserver's ExpVar names to ours.
var derpVars = []struct {
	expvar string
	desc   *prometheus.Desc
	kind   prometheus.ValueType
}{
	{"gauge_current_connections", prometheus.NewDesc("tether_derp_connections",
		"Connections to the built-in relay now: peers, and the other replicas' relays meshing with it.", nil, nil), prometheus.GaugeValue},
	{"gauge_current_home_connections", prometheus.NewDesc("tether_derp_home_connections",
		"Connections from peers whose home region is the built-in relay's.", nil, nil), prometheus.GaugeValue},
	{"accepts", prometheus.NewDesc("tether_derp_accepts_total",
		"Connections the built-in relay accepted.", nil, nil), prometheus.CounterValue},
	{"bytes_received", prometheus.NewDesc("tether_derp_received_bytes_total",
		"Bytes of packets the built-in relay received from its clients.", nil, nil), prometheus.CounterValue},
	{"bytes_sent", prometheus.NewDesc("tether_derp_sent_bytes_total",
		"Bytes of packets the built-in relay sent to its clients.", nil, nil), prometheus.CounterValue},
	{"packets_received", prometheus.NewDesc("tether_derp_received_packets_total",
		"Packets the built-in relay received from its clients.", nil, nil), prometheus.CounterValue},
	{"packets_sent", prometheus.NewDesc("tether_derp_sent_packets_total",
		"Packets the built-in relay sent to its clients.", nil, nil), prometheus.CounterValue},
	{"packets_forwarded_out", prometheus.NewDesc("tether_derp_mesh_forwarded_packets_total",
		"Packets the built-in relay forwarded to another replica's relay, for a peer connected there.", nil, nil), prometheus.CounterValue},
	{"sclient_write_timeouts", prometheus.NewDesc("tether_derp_write_timeouts_total",
		"Writes to a relay client that timed out.", nil, nil), prometheus.CounterValue},
}

// The library counts drops process-wide, in expvars of these names, by
// reason (queue_head and queue_tail: a client reads too slowly;
// unknown_dest: the destination is not connected; …) and kind.
var derpDrops = []struct {
	expvar string
	desc   *prometheus.Desc
}{
	{"derp_packets_dropped", prometheus.NewDesc("tether_derp_dropped_packets_total",
		"Packets the relay dropped, by reason (queue_head, queue_tail: the receiver reads too slowly; unknown_dest, gone_disconnected: it is not connected; write_error; dup_client; unknown_dest_on_fwd).", []string{"reason"}, nil)},
	{"derp_bytes_dropped", prometheus.NewDesc("tether_derp_dropped_bytes_total",
		"Bytes of the packets the relay dropped, by reason.", []string{"reason"}, nil)},
}

// Collector returns the relay's metrics, read when scraped. The drop
// counters are the process's: run one relay per process.
func (d *DERP) Collector() prometheus.Collector { return derpCollector{d.server.ExpVar(false)} }

type derpCollector struct{ vars expvar.Var }

func (c derpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range derpVars {
		ch <- v.desc
	}
	for _, v := range derpDrops {
		ch <- v.desc
	}
}

func (c derpCollector) Collect(ch chan<- prometheus.Metric) {
	m, ok := c.vars.(interface{ Get(string) expvar.Var })
	if !ok {
		return
	}
	for _, v := range derpVars {
		ev := m.Get(v.expvar)
		if ev == nil {
			continue
		}
		if f, err := strconv.ParseFloat(ev.String(), 64); err == nil {
			ch <- prometheus.MustNewConstMetric(v.desc, v.kind, f)
		}
	}
	for _, v := range derpDrops {
		w, ok := expvar.Get(v.expvar).(interface{ WritePrometheus(io.Writer, string) })
		if !ok {
			continue
		}
		for reason, n := range byReason(w, v.expvar) {
			ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, n, reason)
		}
	}
}

var reasonLabel = regexp.MustCompile(`reason="([^"]*)"`)

// byReason sums a labelled library counter over its other labels, from
// its exposition text (the only way to read it: its key type is
// unexported).
func byReason(w interface{ WritePrometheus(io.Writer, string) }, name string) map[string]float64 {
	var buf bytes.Buffer
	w.WritePrometheus(&buf, name)
	out := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		m := reasonLabel.FindStringSubmatch(line)
		i := bytes.LastIndexByte([]byte(line), ' ')
		if m == nil || i < 0 {
			continue
		}
		if n, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[m[1]] += n
		}
	}
	return out
}
