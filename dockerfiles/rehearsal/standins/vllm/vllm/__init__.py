"""Stand-in vLLM for forge's rehearsal: not a working library."""
from ._version import __version__
