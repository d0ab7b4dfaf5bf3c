"""Deployments: one config served by several processes (EPD, PD, an ordered group). `plan` turns a config's
declaration into member launch lines and checks them; `lifecycle` starts, watches and stops the members."""

from harness.deployment.lifecycle import Deployment
from harness.deployment.plan import DeploymentSpec, MemberSpec, launch_lines, member_spec, preflight, problems, skip_reason

__all__ = ["Deployment", "DeploymentSpec", "MemberSpec", "launch_lines", "member_spec", "preflight", "problems", "skip_reason"]
