"""durapod: durable LLM agents."""
