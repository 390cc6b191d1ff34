"""Development and test tools, run from a checkout of the repository (``make demo``, ``make dev``):
the embedded stack (:mod:`~rotation.dev.stack`: OpenBao dev server + moto), the local mail API
gateway (:mod:`~rotation.dev.gateway`) and the demo (:mod:`~rotation.dev.demo`).

Nothing outside ``rotation.dev`` (and the tests and benchmarks) imports this package.
"""
