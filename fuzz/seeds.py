#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into fuzz/corpus/<target>/seed-*.

The seeds give libFuzzer a start in the shapes real clients send (text with PII, an extraction
answer, a chat completions body, an AssembleContext request); what `make fuzz` finds is merged
next to them. Run again after changing a seed: the files are rewritten, others are left alone.
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def string(number, text):
    data = text.encode()
    return field(number, 2, varint(len(data)) + data)


def message(number, role, content):
    inner = string(1, role) + string(2, content)
    return field(number, 2, varint(len(inner)) + inner)


ORG = "7f0c9a4e-1c1e-4a4f-9a53-2c1f1f3b8a01"
AGENT = "2b7f1d6a-5d3e-4c1b-8e0a-9f4c3d2e1b00"

SEEDS = {
    "pii": [
        "Mail me at jane.doe@example.com or call +1 (415) 555-0132.",
        "Card 4111 1111 1111 1111, SSN 123-45-6789, from 192.168.1.20.",
        "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ ４１５\u2011５５５\u2011０１３２ and 0044\u200b20 7946 0958",
        "No PII here, only a cello and a boat.",
    ],
    "tokens": [
        "Hello, world!",
        "naïve café — 東京 🚀🚀🚀 " * 20,
        "    \n\n\t" * 50,
    ],
    "extraction_json": [
        b"\x03\x01\x02\x03" + json.dumps({"memories": [
            {"category": "semantic", "content": "The user plays the cello.", "confidence": 0.9, "turns": [1, 3]},
            {"category": "episodic", "content": "", "confidence": 2, "turns": [9]},
        ]}).encode(),
        b"\x01\x00```json\n[{\"category\":\"procedural\",\"content\":\"Answer in French.\",\"confidence\":0.8,\"turns\":[0]}]\n```",
        b"\x02\x05\x06{\"memories\": {\"oops\": 1}}",
    ],
    "knapsack": [
        struct.pack("<I", 100) + b"".join(struct.pack("<dH", s, t) for s, t in [(0.9, 40), (0.8, 70), (0.5, 30), (float("nan"), 5)]),
        struct.pack("<I", 0) + struct.pack("<dH", 1.0, 0),
    ],
    "content": [
        "  The User  LIKES\tＣｏｆｆｅｅ  ",
        "ﬁ ﬂ Ⅻ ㎏ İstanbul ß ς",
        "\u0130\u0307 \u1e9e \u03a3",
    ],
    "context_request_proto": [
        string(1, ORG) + string(2, AGENT) + string(3, "gpt-4o")
        + message(4, "system", "Be brief.") + message(4, "user", "What instrument do I play?")
        + field(5, 0, varint(256)) + string(6, "session-1") + field(7, 0, varint(500))
        + field(8, 1, struct.pack("<d", 0.2)) + field(9, 0, varint(1)),
        string(1, ORG) + string(2, AGENT) + string(3, "claude-3-5-sonnet") + message(4, "robot", "hi"),
        string(1, "not-a-uuid") + string(3, "gpt-4o"),
    ],
    "chat_request_json": [
        json.dumps({"model": "gpt-4o-mini", "stream": True, "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]}),
        json.dumps({"agent_id": AGENT, "content": "I moved to Lisbon.", "category": "episodic",
                    "confidence": 0.7, "tags": ["home"], "occurred_at": "2026-11-01T10:00:00Z"}),
        json.dumps({"model": "", "messages": []}),
    ],
}

for target, seeds in SEEDS.items():
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        data = seed if isinstance(seed, bytes) else seed.encode()
        (directory / f"seed-{i}").write_bytes(data)
print(f"seeds written under {ROOT}")
