// Pins the NATS config reloader (natsio/nats-server-config-reloader) at the tag the manager
// renders by default; its image for the local node is built from this.
module localplane/nats-reloader

go 1.26.0

require github.com/nats-io/nack v0.23.0
