"""Stand-in triton_kernels for forge's rehearsal: not a working library."""
