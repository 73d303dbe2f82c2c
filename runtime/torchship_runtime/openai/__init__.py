"""OpenAI's API over the generation engine: the wire types (protocol.py), apart from the serving
code that maps them onto the engine (serving.py), as vLLM keeps its entrypoints/openai."""
