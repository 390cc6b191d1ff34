"""Where API keys live on the API side. Today: API Gateway API keys and usage plans."""
