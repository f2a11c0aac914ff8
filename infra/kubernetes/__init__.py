"""The Kubernetes platform (issue 21).

Today this package holds what every later piece stands on: :mod:`.toolchain` finds the binaries
``make kube-tools`` builds, :mod:`.cluster` runs a real control plane on loopback from them (for
tests, benchmarks and demos), :mod:`.api` is the small HTTPS client we talk to an API server
with, and :mod:`.pki` makes the certificates a loopback cluster needs.
"""
