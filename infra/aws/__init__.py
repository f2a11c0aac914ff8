"""The AWS platform: an EC2 instance's shadow in another availability zone.

Modules, each with one job:

- :mod:`~infra.aws.spec`: the validated protection spec (what to protect and how traffic flows);
- :mod:`~infra.aws.clients` and :mod:`~infra.aws.errors`: boto3 clients with retries, and the
  translation of AWS errors into :mod:`infra.errors`;
- :mod:`~infra.aws.discovery`: preflight checks and facts about the primary, before anything
  is created;
- :mod:`~infra.aws.program`: the pulumi-aws program of the shadow;
- :mod:`~infra.aws.traffic` and :mod:`~infra.aws.stack_config`: the boto3 fast path for
  weights and its reconciliation into the stack's configuration;
- :mod:`~infra.aws.metrics`, :mod:`~infra.aws.events`, :mod:`~infra.aws.fencing`: CloudWatch
  samples, EC2 scheduled events, stopping and starting nodes;
- :mod:`~infra.aws.application` and :mod:`~infra.aws.nodes`: the database on the instances
  (PostgreSQL streaming for tiers 1-2: fence, positions, promotion) and where to reach it;
- :mod:`~infra.aws.routing_check`: which node the routers' configuration serves (verify);
- :mod:`~infra.aws.platform`: :class:`~infra.aws.platform.AwsPlatform`, the
  :class:`~infra.platform.Platform` built from the above;
- :mod:`~infra.aws.factory`: builds it from a protection request (``infra.factory``'s "aws").
"""
