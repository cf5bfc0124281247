"""The appliance's firewall: one nftables table generated from the site, the firewall settings and
the site's own rules, loaded in one transaction, with commit-confirm and a management lockdown.

    settings.py    firewall.yaml: the management networks (the lockdown), an input of the engine
    siterules.py   the site's own rules file (the guide's "Firewall Script"), checked and placed
    ruleset.py     the ruleset from templates/firewall/ruleset.nft.j2; nft -c, nft -f, counters
    confirm.py     apply with a revert timer; confirm keeps it

The firewall, its settings and the site's rules are local to each node of an HA pair (vendor
guide 12.3, "Non-Replicated Settings"); they live on the data partition, in DATA_DIR/firewall.
"""
