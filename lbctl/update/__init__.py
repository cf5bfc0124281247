"""Offline A/B updates: signed archives (archive, minisign), the slots and the ESP (disk), the
apply (apply), the boot's health gate (health), the report (report) and what lives on the data
partition (state). docs/update.md is the guide."""
