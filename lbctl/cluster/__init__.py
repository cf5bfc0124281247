"""The HA pair: pairing, heartbeat and the floating IPs, configuration replication, status."""
