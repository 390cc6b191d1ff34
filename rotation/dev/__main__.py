"""``python -m rotation.dev demo|gateway|up``: see :mod:`rotation.dev.cli`."""

from rotation.dev.cli import main

main(prog_name="python -m rotation.dev")
