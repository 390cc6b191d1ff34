"""Entry point of the CrossGuard pack: ``pulumi preview --policy-pack policies/pack``.

Thin on purpose: constructing ``PolicyPack`` starts the analyzer's gRPC server and blocks, so no
test or tool imports this module. The rules live in :mod:`policies.pack.rules`.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack.rules import ALL_POLICIES

PolicyPack("secure-mail-api-baseline", policies=ALL_POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
