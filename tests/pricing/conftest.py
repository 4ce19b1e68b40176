from __future__ import annotations

import pytest

from pricing import Catalog
from pricing.loader import catalog_from_raw
from pricing.values import safe_load

# A small catalog for the rules the built-in data does not exercise: a reasoning rate of
# its own, audio output, per-request fees, a self-hosted model and an alias pattern.
SYNTHETIC = """
version: test-1
models:
  think-1:
    source: test
    prices:
      - effective_from: 2026-01-01
        input: 1
        output: 2
        reasoning: 3
        audio_output: 10
        per_request: 0.01
  llama-3.1-70b:
    provider: local
    aliases: ["llama-3.1-70b-*"]
    source: measured on 2x H100, 2026-11
    prices:
      - effective_from: 2026-01-01
        self_hosted:
          gpu_hour_usd: 2.5
          gpus: 2
          input_tokens_per_hour: 10000000
          output_tokens_per_hour: 1000000
"""


@pytest.fixture(scope="session")
def synthetic() -> Catalog:
    return catalog_from_raw(safe_load(SYNTHETIC))
