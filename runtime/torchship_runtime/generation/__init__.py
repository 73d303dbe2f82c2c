"""Text generation: the continuous-batching engine (engine, scheduler), its paged KV cache and
attention, sampling and detokenisation, and the served models of the `transformers` format. The
wire protocols that reach it live apart (openai/, generate_v2.py)."""
