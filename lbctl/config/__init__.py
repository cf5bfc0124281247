"""The rendered configuration: renderer, numbered generations, apply and rollback, HAProxy's
runtime API and the VIP addresses handed to systemd-networkd."""
