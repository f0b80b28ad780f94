"""servecap load side: scenario spec, Locust users and shapes, collectors, orchestrator, CLI."""
