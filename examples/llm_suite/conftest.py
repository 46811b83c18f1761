"""The example suite's stand-in for the OpenAI API: canned answers, chosen by the question.

Offline runs: a real ``openai.OpenAI`` client whose HTTP transport answers from the
table below, so the SDK, the instrumentation and the gate all run for real.
"""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from cert_core.testing import openai_chat_completion

CANNED = {
    "refund": "Refunds are issued within 14 days of a return, for unused items in their original "
    "packaging; the $4.99 shipping cost is not refunded.",
    "shipping": "Standard shipping takes 3 to 5 business days and costs $4.99; orders above $50 ship free.",
    "warranty": "Laptops carry a 2-year warranty against manufacturing defects; batteries are covered "
    "for 12 months.",
    # A hallucination: both durations are invented.
    "batteries": "Batteries are covered for 36 months, and the laptop warranty lasts 4 years.",
}


def _reply(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    question = body["messages"][-1]["content"].lower()
    text = next((a for key, a in CANNED.items() if key in question), "I do not know.")
    return httpx2.Response(200, json=openai_chat_completion(text, prompt_tokens=180, completion_tokens=40))


@pytest.fixture
def client() -> openai.OpenAI:
    transport = httpx2.MockTransport(_reply)
    return openai.OpenAI(api_key="sk-example-not-a-real-key", http_client=httpx2.Client(transport=transport))
