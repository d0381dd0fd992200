"""Core: the compiled model, its drug-free steady state, parameter tables, paths, atomic I/O and error types."""
