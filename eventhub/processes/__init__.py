"""Process instances (SPEC §6.2, seed 000): definitions (``definitions``), instances and the
correlation of the events that name them (``instances``), what they say on the wire and in
the log (``lifecycle``), and the engine that runs them (``engine``). The store keeps their
rows (``eventhub/log/sqlite/instances.py``)."""
