"""Serving targets: the model under test and the servers that serve it."""
