// Pins containerd 2.x, its runc shim and ctr for the local node (Kubernetes 1.36 expects
// containerd 2; Debian's 1.6 is too old). Built with the tags in binaries.ts.
module localplane/containerd

go 1.26.6

require github.com/containerd/containerd/v2 v2.4.2
