#!/usr/bin/env python3
"""The peer of `make bench-embed`: the same model file and tokenizer through Python's
onnxruntime + tokenizers, the way a Python embedding service would run them, with the same
thread count as IBEX. Prints one JSON object of raw measurements on stdout."""
import argparse
import json
import os
import time

# Same thread budget as IBEX: one intra-op thread, no tokenizer thread pool.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--texts", required=True, help="JSON file: {short, long, batch: [...]}")
    ap.add_argument("--short", type=int, default=200)
    ap.add_argument("--long", type=int, default=100)
    ap.add_argument("--batch-reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    texts = json.load(open(args.texts))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(args.model_dir, "model.onnx"), opts,
                                   providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)

    def embed(batch):
        encs = tok.encode_batch(batch)
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = e.attention_mask
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def timed(text, n):
        for _ in range(10):
            embed([text])
        out = []
        for _ in range(n):
            t = time.perf_counter()
            embed([text])
            out.append((time.perf_counter() - t) * 1000.0)
        return out

    result = {"short_ms": timed(texts["short"], args.short), "long_ms": timed(texts["long"], args.long)}
    embed(texts["batch"][:8])
    rates = []
    for _ in range(args.batch_reps):
        t = time.perf_counter()
        embed(texts["batch"])
        rates.append(len(texts["batch"]) / (time.perf_counter() - t))
    result["batch_texts_per_s"] = rates
    result["short_tokens"] = len(tok.encode(texts["short"]).ids)
    result["long_tokens"] = len(tok.encode(texts["long"]).ids)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
