"""First-boot prompt on the VM console for the admin (root) password.

Runs only when provisioning gave neither a password nor an SSH key, as the vendor's setup asks
"be sure to set a secure password". It does not hold up READY: the appliance serves traffic while
the prompt waits; only the console login waits for it.
"""

from __future__ import annotations

import getpass
import subprocess
import sys

from . import credentials

MIN_LENGTH = 8


def ask() -> str:
    while True:
        first = getpass.getpass("New admin (root) password: ")
        if len(first) < MIN_LENGTH:
            print(f"Use at least {MIN_LENGTH} characters.")
            continue
        if getpass.getpass("Repeat it: ") != first:
            print("The two entries differ; try again.")
            continue
        return first


def main() -> int:
    print("\nPACS load-balancer appliance: first boot.")
    print("No admin password or SSH key was provisioned. Set the admin (root) password now.\n")
    password = ask()
    subprocess.run(["chpasswd"], input=f"root:{password}\n", text=True, check=True)
    credentials.save()
    print("Password set. Log in as root.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
