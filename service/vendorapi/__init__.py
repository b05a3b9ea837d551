"""The market vendor: the HTTP client the service uses and the simulator tests use."""
