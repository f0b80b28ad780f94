"""On-demand benchmarks that print figures (not run in CI)."""
