"""How the engine reaches a host: ``base.Transport`` and its peers ``ssh`` and ``local``."""
