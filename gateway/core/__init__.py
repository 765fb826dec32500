"""The core types every part shares: a leaf package that imports nothing of the project.

Samples and points (:mod:`.point`), errors (:mod:`.errors`), the interfaces between the parts
(:mod:`.contracts`), what a driver package declares to be registered (:mod:`.driver`), value
admission (:mod:`.values`), clocks (:mod:`.clock`), the base config models of devices and points
(:mod:`.schema`) with the rules they check (identifier codes :mod:`.identifiers`, units
:mod:`.units`, mine point classes :mod:`.mine`, tag values :mod:`.lineproto`), the TOML writer
(:mod:`.toml_writer`), and the shared RS-485 line of the serial-line drivers (:mod:`.line`).
Drivers and pipelines import from here, never from the rest of ``gateway``; the import-linter
contracts in pyproject.toml keep it so.
"""
