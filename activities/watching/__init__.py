"""The fleet watcher: one long-running activity that watches every protection of a task queue.

Why one fleet-level activity instead of a polling loop per protection (DESIGN.md §2, cost
model): a per-instance "sample every 15 s" loop costs about 480 Temporal actions per
instance-hour. Here one activity samples every instance, scores the fleet in one LightGBM
batch, runs each protection's policy within the fleet's budget and *tells a protection only
what matters*. Its heartbeats are shared by the whole fleet.

- :mod:`.watcher` — the loop: discover, locate, sample, score, decide, tell.
- :mod:`.targets` — discovery through Temporal visibility (free of actions).
- :mod:`.items` — what is kept per protection, and when a score is worth a signal.
- :mod:`.failover` — automatic failover of a serving node that stopped answering.
- :mod:`.sync` — tier 1's non-strict synchronous mode.
- :mod:`.planner` — risk-triggered shadows within a fleet budget.
- :mod:`.checks` — per-protection checks every second, each on its own task.

Everything platform-specific is reached through ``infra.platform.FleetObserver`` and
``infra.platform.Platform``.
"""
