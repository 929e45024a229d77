"""RAG chains built on ragkit retrievers (the integrations layer)."""
