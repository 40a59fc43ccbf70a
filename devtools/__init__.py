"""Development tools: Azurite for tests and the local demonstration."""
