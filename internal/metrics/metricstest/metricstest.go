// Package metricstest reads metrics back from a registry, for tests.
package metricstest

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Value returns the value of the series of the named metric whose labels
// include labels (name, value, name, value…): a counter's or gauge's
// value, a histogram's sample count. ok is false when no series matches.
// With several matches, it returns their sum.
func Value(g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool, err error) {
	if len(labels)%2 != 0 {
		return 0, false, fmt.Errorf("labels must come in name, value pairs: %q", labels)
	}
	families, err := g.Gather()
	if err != nil {
		return 0, false, err
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !matches(m, labels) {
				continue
			}
			ok = true
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Histogram != nil:
				v += float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				v += m.Untyped.GetValue()
			}
		}
	}
	return v, ok, nil
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Series returns how many series the named metric has.
func Series(g prometheus.Gatherer, name string) (int, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric()), nil
		}
	}
	return 0, nil
}

// ParseText reads metrics in Prometheus' text format (a scrape of
// /metrics) into a Gatherer, for Value and Series.
func ParseText(r io.Reader) (prometheus.Gatherer, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(families))
	for _, f := range families {
		out = append(out, f)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return out, nil }), nil
}
