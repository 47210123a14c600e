"""Stand-in torchvision for forge's rehearsal: not a working library."""
from .version import __version__
