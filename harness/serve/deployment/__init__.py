"""Deployments: one config served by several processes (EPD, PD, an ordered group). `plan` turns a config's
declaration into member launch lines and checks them; `lifecycle` starts, watches and stops the members."""
