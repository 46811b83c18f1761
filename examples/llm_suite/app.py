"""A tiny retrieval-augmented support bot: the application under test.

It answers from a handful of policy passages with the official OpenAI SDK. The example suite
beside it runs offline: its conftest gives the bot a client whose network is a canned stand-in.
"""

from __future__ import annotations

from typing import Any

DOCUMENTS = {
    "refunds": "Refunds are issued within 14 days of a return. Items must be unused and in their "
    "original packaging. Shipping costs of $4.99 are not refunded.",
    "shipping": "Standard shipping takes 3 to 5 business days and costs $4.99. Orders above $50 "
    "ship free. Express shipping takes 1 business day and costs $12.",
    "warranty": "Every laptop carries a 2-year warranty covering manufacturing defects. Batteries "
    "are covered for 12 months. Accidental damage is not covered.",
}


def retrieve(question: str) -> str:
    """The passage whose key word the question mentions (a stand-in for a vector search)."""
    q = question.lower()
    for key, text in DOCUMENTS.items():
        if key.rstrip("s") in q:
            return text
    return " ".join(DOCUMENTS.values())


def answer(client: Any, question: str, *, model: str = "gpt-4o-mini") -> tuple[str, str]:
    """``(answer, context)`` for a customer question."""
    context = retrieve(question)
    response = client.chat.completions.create(
        model=model,
        temperature=0,
        messages=[
            {"role": "system", "content": f"Answer only from this context:\n{context}"},
            {"role": "user", "content": question},
        ],
    )
    return response.choices[0].message.content or "", context
