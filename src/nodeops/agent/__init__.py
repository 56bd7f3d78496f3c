"""The agent: the program nodeops installs on hosts (``nodeops_agent.py``), and the builder of its packages.

``nodeops_agent.py`` runs on a host's own ``python3``, alone, so nothing in this package imports anything else from
nodeops (STYLE.md, Layout); ``package.py`` builds the versioned tarball the service pushes to hosts.
"""
