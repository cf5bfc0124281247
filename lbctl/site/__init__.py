"""The site model: the site file's table, the service presets and the health checks."""
