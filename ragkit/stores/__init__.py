"""Vector-store adapters: ``ragkit.stores.langchain`` and ``ragkit.stores.llamaindex``.

Each is a thin translation onto a ``HybridStore`` and needs its extra (``langchain`` or
``llamaindex``); the engines themselves live in ``ragkit.backends``.
"""
