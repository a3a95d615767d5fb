// A small client_golang application whose /metrics was captured for promotel's tests
// (tests/testdata/real/client-golang). It serves the default registry (Go runtime and process
// collectors) plus an application counter, histogram (with exemplars), summary and gauge, with
// OpenMetrics negotiation enabled, as many Go services do.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "app_http_requests_total",
		Help: "HTTP requests handled, by method and code.",
	}, []string{"method", "code"})
	latency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "app_http_request_duration_seconds",
		Help:    "HTTP request latency.",
		Buckets: []float64{0.005, 0.05, 0.5, 5},
	}, []string{"method"})
	payload = promauto.NewSummaryVec(prometheus.SummaryOpts{
		Name:       "app_payload_bytes",
		Help:       "Request payload sizes.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, []string{"method"})
	inflight = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "app_inflight_requests",
		Help: "Requests being served.",
	}, []string{"pool"})
)

func main() {
	addr := flag.String("listen", "127.0.0.1:19200", "listen address")
	flag.Parse()
	for i, v := range []float64{0.001, 0.02, 0.02, 0.3, 1.2, 7} {
		method := []string{"GET", "POST"}[i%2]
		requests.WithLabelValues(method, "200").Inc()
		latency.WithLabelValues(method).(prometheus.ExemplarObserver).ObserveWithExemplar(
			v, prometheus.Labels{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
		payload.WithLabelValues(method).Observe(float64(100 * (i + 1)))
	}
	requests.WithLabelValues("GET", "500").Add(2)
	inflight.WithLabelValues("default").Set(3)
	inflight.WithLabelValues("batch").Set(0)
	http.Handle("/metrics", promhttp.HandlerFor(prometheus.DefaultGatherer,
		promhttp.HandlerOpts{EnableOpenMetrics: true}))
	log.Fatal(http.ListenAndServe(*addr, nil))
}
