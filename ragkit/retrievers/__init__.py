"""LangChain and LlamaIndex retrievers over a HybridStore (the integrations layer)."""
