# Kubernetes toolchain (issue 21); included by the main Makefile.

.PHONY: kube-tools

# A loopback control plane's binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
# etcd, KWOK), KWOK's stage files, the Gateway API CRDs and pulumi-resource-kubernetes, each
# built once per version from the Go module proxy into ~/.cache/shadowshift and linked into
# .tools. A fresh machine needs about 40 minutes of one busy core (see docs/kubernetes.md);
# afterwards this is instant.
kube-tools:
	@bash scripts/build-kube.sh

.PHONY: bench-kube-cluster

# Start-to-ready of the loopback control plane (median of 5) and the idle memory of its five
# processes; writes bench/results/kube_cluster.json. About a minute once the tools are built.
bench-kube-cluster: python-deps kube-tools
	$(PY) -m bench.kube_cluster --output bench/results/kube_cluster.json

.PHONY: bench-kube-cutover

# Planned cutovers through the Kubernetes path (role labels, the EndpointSlice controller, then
# HAProxy) side by side with the same cutovers on the hosts platform, under ~100 writes/s;
# writes bench/results/kube_cutover.json. About 5 minutes; run it alone.
bench-kube-cutover: python-deps kube-tools
	$(PY) -m bench.kube_cutover --output bench/results/kube_cutover.json
