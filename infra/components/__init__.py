"""One ComponentResource per concern of the mail API stack.

Each module exposes ``<Thing>Args`` (a dataclass of inputs) and ``<Thing>(ComponentResource)``.
Children are created with ``parent=self`` and named ``f"{name}-<role>"``; every component ends
with ``register_outputs``. Nothing is created inside ``apply``. The control IDs in docstrings
refer to ``docs/security-baseline.md``.
"""
