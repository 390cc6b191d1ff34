"""Entry point for `pulumi up` / `pulumi preview` (Pulumi.yaml: main: infra/).

The Lambda packages must be built first (`make package`); a missing one stops the program before any
resource is declared.
"""

from infra.program import main

main(require_artifacts=True)
