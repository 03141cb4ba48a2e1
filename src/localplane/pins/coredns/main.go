// Command coredns is CoreDNS with the plugins the local node's cluster DNS uses: it answers
// *.cluster.local from the API server and nothing else (no forward: pods on the local node have
// no business resolving outside names).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order CoreDNS chains them in, as in its own plugin.cfg.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "errors", "loadbalance", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
