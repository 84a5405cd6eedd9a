"""Lifecycle policies: which images of a repository to expire, in ECR's format.

The engine is pure: `parse_policy` checks a document and `evaluate` answers
for a list of images at a given time; storing policies, listing images and
deleting what expires belong to the caller.
"""

from dockyard.services.lifecycle.policy import (
    Evaluation,
    Expiry,
    Image,
    Policy,
    PolicyInvalid,
    Rule,
    RuleOutcome,
    Selection,
    evaluate,
    parse_policy,
    policy_from_json,
)

__all__ = [
    "Evaluation",
    "Expiry",
    "Image",
    "Policy",
    "PolicyInvalid",
    "Rule",
    "RuleOutcome",
    "Selection",
    "evaluate",
    "parse_policy",
    "policy_from_json",
]
