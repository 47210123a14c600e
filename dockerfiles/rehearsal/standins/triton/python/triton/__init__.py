"""Stand-in triton for forge's rehearsal: not a working library."""
__version__ = "3.5.0"
