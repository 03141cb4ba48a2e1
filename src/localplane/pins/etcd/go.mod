// Pins etcd for the local control plane (Kubernetes 1.34+ pairs with etcd 3.6).
module localplane/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
