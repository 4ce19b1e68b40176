"""The token usage of one call, normalised across providers.

Every count is a total of its own kind as the provider bills it. Subsets are stated per
field, so a cost can be computed without double counting. ``None`` means "not reported",
which is different from 0 ("reported as zero").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call.

    - ``input_tokens``: every input token, cached reads and cache writes included
      (OpenAI ``prompt_tokens``; Anthropic ``input_tokens`` + cache read + cache write).
    - ``cached_input_tokens``: cache reads, a subset of ``input_tokens``.
    - ``cache_write_tokens``: cache writes at the default (5-minute) rate, a subset of input.
    - ``cache_write_1h_tokens``: cache writes at the 1-hour rate, a subset of input.
    - ``output_tokens``: every billable output token, reasoning included.
    - ``reasoning_tokens``: reasoning/thinking tokens, a subset of ``output_tokens``.
    - ``audio_input_tokens`` / ``audio_output_tokens``: audio subsets of input / output.
    - ``web_search_calls``: server-side web searches, billed per call on top of tokens.
    """

    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None
    web_search_calls: int | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output, counting an unreported side as 0."""
        return (self.input_tokens or 0) + (self.output_tokens or 0)
