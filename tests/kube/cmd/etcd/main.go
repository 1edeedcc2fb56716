// etcd, as the etcd binary runs it: the Kubernetes-mode tests' storage.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
