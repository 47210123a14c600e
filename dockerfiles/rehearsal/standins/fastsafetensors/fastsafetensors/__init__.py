"""Stand-in fastsafetensors for forge's rehearsal."""
