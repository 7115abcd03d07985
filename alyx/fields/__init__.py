"""Field types: one module per type (``string.py``, ``int.py``, ...), the interface in ``base.py``,
the registry in ``registry.py``."""
