// Pins nats-server for tests that run real NATS; keep in step with the default nats image tag.
module localplane/nats

go 1.26.0

require github.com/nats-io/nats-server/v2 v2.14.9
