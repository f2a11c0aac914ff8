"""Namespace hosts: a multi-host substrate made of Linux network namespaces on one machine.

A *host* is a network namespace with its own address (from 198.18.0.0/15, RFC 2544's
benchmarking range), joined to a per-fleet bridge in the root namespace by a veth pair, with
its own ext4 data filesystem on a loop device and its own cgroup v1 groups (memory, freezer,
cpu, blkio). ``docs/hosts.md`` is the operator's guide.

Modules, from the bottom up:

- :mod:`infra.hosts.network` -- the address plan, free fleet indexes, the range check;
- :mod:`infra.hosts.spec` -- :class:`~infra.hosts.spec.HostSpec`,
  :class:`~infra.hosts.spec.FleetSpec` and their validation;
- :mod:`infra.hosts.records`, :mod:`infra.hosts.links`, :mod:`infra.hosts.disk`,
  :mod:`infra.hosts.cgroups`, :mod:`infra.hosts.firewall` -- the converging system calls;
- :mod:`infra.hosts.build` -- build, inspect and remove a bridge or a host from them;
- :mod:`infra.hosts.resources` -- the Pulumi dynamic providers ``Bridge`` and ``Host``;
- :mod:`infra.hosts.fleet` -- the fleet's Pulumi program and its ``up``/``destroy``;
- :mod:`infra.hosts.host` -- the runtime handle: run processes inside a host, inject faults;
- :mod:`infra.hosts.cleanup` -- list and remove leftovers by hand
  (``python -m infra.hosts.cleanup``).

Everything here needs root. Importing this package imports nothing heavy. The hosts
*platform* (PostgreSQL, agents, router on these hosts) is built on this substrate.
"""
