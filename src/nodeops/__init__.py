"""nodeops: operational jobs on fleets of hosts, with every step's log served through Node Manager's API."""

__version__ = "0.1.0"
