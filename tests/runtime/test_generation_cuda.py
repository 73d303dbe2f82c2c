"""Text generation on a GPU, in bfloat16 and float16: greedy output through the server equals
transformers' generate() on the same device and dtype, with requests batched together. Skipped
without a CUDA device."""

from __future__ import annotations

import asyncio

import llmfiles
import openai
import pytest
import torch
from llmserved import prompts, serve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_greedy_equals_generate_on_cuda(tmp_path, dtype):
    import transformers

    path = llmfiles.build(tmp_path / "llama", "llama")
    running = serve(tmp_path, path, TORCHSHIP_DEVICE="cuda", TORCHSHIP_DTYPE=dtype)
    texts = prompts(8)

    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        jobs = [
            client.completions.create(model="tiny", prompt=t, max_tokens=16, temperature=0)
            for t in texts
        ]
        return await asyncio.gather(*jobs)

    try:
        answers = asyncio.run(ask())
    finally:
        running.stop()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=getattr(torch, dtype)
    ).to("cuda")
    for text, answer in zip(texts, answers, strict=True):
        ids = tokenizer(text, return_tensors="pt")["input_ids"].to("cuda")
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=16, do_sample=False, top_k=None)
        expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert answer.choices[0].text == expected
