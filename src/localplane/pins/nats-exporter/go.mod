// Pins the Prometheus NATS exporter (natsio/prometheus-nats-exporter) at the tag the manager
// renders by default; its image for the local node is built from this.
module localplane/nats-exporter

go 1.26.0

require github.com/nats-io/prometheus-nats-exporter v0.20.1
