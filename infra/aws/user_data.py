"""The shadow instance's user data: mount its data volume and start the node agent.

EC2 runs it as root at the first boot. It waits for the shadow's data volume (attached after
the instance starts), makes a filesystem on it if it has none, mounts it on the agent's data
root, writes the agent's systemd unit (the one ``docs/operations.md`` gives for any VM) with
the instance's private address and the shadow's node name as its host, and starts it. The
agent then connects *out* to Temporal and polls ``shadowshift-host-<shadow node>``: the control
worker needs no SSH, SSM or inbound port to have the standby copied (``AwsAgentPlatform``).

The AMI must carry ShadowShift in ``/opt/shadowshift`` (with its virtualenv) and PostgreSQL's
binaries; nothing is downloaded at boot. Every value written into the script comes from the
validated spec (``contracts.spec_aws``: a node name, ``host:port``, an absolute path, a volume
id), and each is also shell-quoted, so none can inject a command.
"""

from __future__ import annotations

import shlex

from contracts.agent import AGENT_HTTP_PORT
from contracts.spec_aws import AwsAgent

UNIT = "shadowshift-agent.service"

_SCRIPT = """#!/bin/bash
# ShadowShift: the shadow's data volume and its node agent (infra/aws/user_data.py).
set -euo pipefail
volume={volume}
data_root={data_root}
# Nitro instances name the volume by its id; others keep the requested device name.
device=""
for attempt in $(seq 1 300); do
  for candidate in "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${{volume//-/}}" {device}; do
    if [ -b "$candidate" ]; then device="$candidate"; break 2; fi
  done
  sleep 1
done
[ -n "$device" ] || {{ echo "shadowshift: volume $volume never appeared" >&2; exit 1; }}
blkid "$device" >/dev/null 2>&1 || mkfs.ext4 -q -L shadowshift "$device"
install -d -m 0755 "$data_root"
grep -q " $data_root " /proc/mounts || mount "$device" "$data_root"
chmod 0755 "$data_root"
token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \\
  -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
address=$(curl -sf -H "X-aws-ec2-metadata-token: $token" \\
  http://169.254.169.254/latest/meta-data/local-ipv4)
cat > /etc/systemd/system/{unit} <<UNIT
[Unit]
Description=ShadowShift node agent ({host})
After=network-online.target
Wants=network-online.target

[Service]
User=root
Environment=SHADOWSHIFT_TEMPORAL_ADDRESS={temporal}
Environment=SHADOWSHIFT_NAMESPACE={namespace}
Environment=SHADOWSHIFT_LOG_LEVEL=INFO
ExecStart=/opt/shadowshift/.venv/bin/shadowshift agent --host {host} --address $address \\
    --http-port {http_port} --data-root $data_root
KillMode=process
TimeoutStopSec=30
Restart=always
RestartSec=1
RestartPreventExitStatus=2

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now {unit}
"""


def agent_user_data(agent: AwsAgent, host: str, volume_id: str, device_name: str) -> str:
    """The user data of a shadow instance whose agent serves ``host`` (the shadow's node
    name) and keeps its servers on volume ``volume_id`` (attached as ``device_name``)."""
    return _SCRIPT.format(
        volume=shlex.quote(volume_id), data_root=shlex.quote(agent.data_root),
        device=shlex.quote(device_name), unit=UNIT, host=shlex.quote(host),
        temporal=shlex.quote(agent.temporal_address), namespace=shlex.quote(agent.namespace),
        http_port=AGENT_HTTP_PORT)
