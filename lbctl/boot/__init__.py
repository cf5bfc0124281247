"""The boot path: provisioning, network.yaml, the admin credentials and the READY/FAILED lines."""
