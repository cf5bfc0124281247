"""lbctl: validates, renders, applies and reports the load-balancer configuration.

The same package runs on the appliance (Debian's python3 with python3-yaml, python3-jinja2 and
python3-click) and on a build host (the project's virtualenv), so nothing here may depend on more.
"""
