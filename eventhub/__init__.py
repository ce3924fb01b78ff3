"""eventhub: a self-hosted CloudEvents hub."""

from importlib import metadata

try:
    __version__ = metadata.version("eventhub")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"
