"""Offline input-token counting for budget reservation, before the provider reports usage.

Counts use the real tiktoken encodings (built offline by ``proxy._bpe``) and the OpenAI cookbook
formulas for chat messages and tools (reference section 4.1). They are estimates for anything
but plain text: the provider's reported usage always settles the bill, and a reservation made
from these numbers is released or topped up then. Non-OpenAI models (Claude, Gemini, Llama...)
are counted with ``o200k_base`` as an approximation; their real tokenizers are not public or not
offline.

All methods are safe to call from many threads at once (the proxy calls them through
``asyncio.to_thread``; tiktoken releases the GIL while encoding).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken
import tiktoken.model

from proxy._bpe import BpeLoader, TokenizerDataError

__all__ = [
    "AUDIO_PART_TOKENS",
    "IMAGE_HIGH_DETAIL_TOKENS",
    "IMAGE_LOW_DETAIL_TOKENS",
    "OTHER_MEDIA_PART_TOKENS",
    "Tokenizer",
    "TokenizerDataError",
    "max_input_tokens_bound",
]

ENDPOINTS = frozenset({"chat.completions", "completions", "embeddings", "responses"})

# Media parts are priced by content the proxy does not decode (pixels, seconds), so they get a
# fixed estimate. Images follow OpenAI's gpt-4o tile rule: 85 tokens at detail "low"; otherwise
# 85 + 170 per 512px tile, and the largest tiling after its resizing (fit in 2048x2048, shortest
# side 768) is 4x2 tiles, so 1445 is the most a high/auto-detail image costs on gpt-4o. (gpt-4o-
# mini reports image tokens ~33x inflated; this estimate does not model that.) Audio is charged
# at about 10 tokens a second on gpt-4o audio models; we assume one minute per part. Files and
# unknown part types get the image worst case.
IMAGE_LOW_DETAIL_TOKENS = 85
IMAGE_HIGH_DETAIL_TOKENS = 1445
AUDIO_PART_TOKENS = 600
OTHER_MEDIA_PART_TOKENS = IMAGE_HIGH_DETAIL_TOKENS

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_AUDIO_PARTS = frozenset({"input_audio", "audio"})

# The encodings we ship BPE files for. Anything tiktoken maps elsewhere is approximated.
_SHIPPED = frozenset({"cl100k_base", "o200k_base"})
_APPROXIMATION = "o200k_base"

_REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>


def max_input_tokens_bound(body_bytes_len: int) -> int:
    """An upper bound on a request's text input tokens, from its JSON body's byte length alone.

    Used to reserve budget on the request path without running a tokenizer. Why it bounds
    ``Tokenizer.count_request``: every BPE token covers at least one byte, so a string of n UTF-8
    bytes encodes to at most n tokens, and JSON never spells a string in fewer bytes (escapes
    only lengthen it). The formula's fixed overheads ride on JSON structure that takes bytes
    too: 3 tokens per message needs at least ``{}`` plus a comma, a name's 1 token needs
    ``"name":``, a tool's 7-10 needs ``{"function":{}}``, an enum item's 3 needs ``"",``. So the
    count stays under 1.5 tokens per byte plus the reply priming and ``func_end``; we return
    2 per byte plus 64 to cover values we re-serialise (tool calls, numbers like ``1e5``).
    Media parts are NOT covered: an image URL of 30 bytes costs up to
    ``IMAGE_HIGH_DETAIL_TOKENS`` here and more upstream. Expect ~8x the real count for English.
    """
    if body_bytes_len < 0:
        raise ValueError("body_bytes_len must be >= 0")
    return 2 * body_bytes_len + 64


@functools.lru_cache(maxsize=4096)
def _encoding_name(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]  # "openai/gpt-4o", "azure/gpt-4o"
    name = name.removeprefix("mock-")  # the test/mock provider mirrors real model names
    try:
        # tiktoken's own table (exact names, then prefixes), so new models arrive with upgrades.
        enc = tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        return _APPROXIMATION
    if enc == "o200k_harmony":
        # gpt-oss: same ranks and regex as o200k_base, only more special tokens, which we
        # count as plain text anyway, so o200k_base gives identical counts.
        return "o200k_base"
    return enc if enc in _SHIPPED else _APPROXIMATION  # retired p50k/r50k models


def _json(value: Any) -> str:
    # Compact and unescaped, so the re-serialised text is no longer than the caller's JSON.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class Tokenizer:
    """Counts input tokens per model with offline tiktoken encodings, loaded lazily once."""

    def __init__(self, loader: BpeLoader | None = None) -> None:
        self._loader = loader if loader is not None else _DEFAULT_LOADER

    @classmethod
    def load(cls) -> Tokenizer:
        """Return a tokenizer sharing the process-wide encodings; cheap, loads nothing yet."""
        return cls()

    def warm(self) -> None:
        """Build both encodings now (~0.7 s together), e.g. from a start-up thread."""
        for name in sorted(_SHIPPED):
            self._loader.get(name)

    def encoding_name(self, model: str) -> str:
        """``o200k_base`` or ``cl100k_base`` for ``model`` (section 4.2).

        Provider prefixes (``openai/gpt-4o``) and ``mock-`` are stripped; models tiktoken does
        not know (Claude, Gemini, Llama...) get ``o200k_base`` as an approximation.
        """
        return _encoding_name(model)

    def encoding(self, model: str) -> tiktoken.Encoding:
        """The tiktoken encoding used to count ``model``'s tokens."""
        return self._loader.get(_encoding_name(model))

    def count(self, model: str, text: str) -> int:
        """Tokens in plain ``text``; special-token strings count as ordinary text."""
        return len(self.encoding(model).encode_ordinary(text))

    def count_chat(
        self,
        model: str,
        messages: Iterable[Any],
        tools: Iterable[Any] | None = None,
    ) -> int:
        """Prompt tokens of a chat request by the cookbook formula (reference section 4.1).

        3 tokens per message, 1 more per ``name``, 3 to prime the reply; every string value
        (role included) is encoded. Content parts count their text, media parts a fixed
        estimate; other values (``tool_calls``, ``function_call``) count as their JSON. Tools
        follow the cookbook's ``num_tokens_for_tools``.
        """
        return _Counter(self.encoding(model), model).chat(messages, tools)

    def count_request(self, endpoint: str, model: str, body: Mapping[str, Any]) -> int:
        """Input tokens of an OpenAI-shaped request ``body`` sent to ``endpoint``.

        ``endpoint`` is one of ``chat.completions``, ``completions``, ``embeddings``,
        ``responses``. Shapes we do not recognise count as their JSON, so a new API feature
        over-counts rather than slipping past the budget.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        c = _Counter(self.encoding(model), model)
        if endpoint == "chat.completions":
            tools = _listed(body.get("tools"))
            tools += [{"type": "function", "function": f} for f in _listed(body.get("functions"))]
            return c.chat(_listed(body.get("messages")), tools)
        if endpoint == "completions":
            return c.prompts(body.get("prompt")) + c.text(body.get("suffix"))
        if endpoint == "embeddings":
            return c.prompts(body.get("input"))
        return c.responses(body)


_DEFAULT_LOADER = BpeLoader()


class _Counter:
    """One request's counting, bound to an encoding and the model's formula constants."""

    def __init__(self, enc: tiktoken.Encoding, model: str) -> None:
        self.enc = enc
        # The cookbook's legacy gpt-3.5-turbo-0301 spelled messages differently.
        legacy = "gpt-3.5-turbo-0301" in model
        self.per_message = 4 if legacy else 3
        self.per_name = -1 if legacy else 1
        # num_tokens_for_tools: func_init is 7 for the gpt-4o family, 10 for gpt-3.5/gpt-4.
        self.func_init = 7 if enc.name == "o200k_base" else 10

    def text(self, value: Any) -> int:
        if value is None:
            return 0
        return len(self.enc.encode_ordinary(value if isinstance(value, str) else _json(value)))

    def prompts(self, prompt: Any) -> int:
        """A completions ``prompt`` or embeddings ``input``: str, token array, or a list of them."""
        if isinstance(prompt, list):
            if all(isinstance(t, int) for t in prompt):
                return len(prompt)  # one pre-tokenised prompt
            return sum(self.prompts(p) for p in prompt)
        return self.text(prompt)

    def chat(self, messages: Iterable[Any], tools: Iterable[Any] | None) -> int:
        n = _REPLY_PRIMING + sum(self.message(m) for m in messages)
        return n + self.tools(tools) if tools else n

    def message(self, message: Any) -> int:
        if not isinstance(message, Mapping):
            return self.per_message + self.text(message)
        n = self.per_message
        for key, value in message.items():
            n += self.content(value) if key == "content" else self.text(value)
            if key == "name":
                n += self.per_name
        return n

    def content(self, content: Any) -> int:
        if isinstance(content, list):
            return sum(self.part(p) for p in content)
        return self.text(content)

    def part(self, part: Any) -> int:
        if not isinstance(part, Mapping):
            return self.text(part)
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            return self.text(part.get("text"))
        if kind == "refusal":
            return self.text(part.get("refusal"))
        if kind in _IMAGE_PARTS:
            detail = part.get("detail")
            if isinstance(part.get("image_url"), Mapping):
                detail = part["image_url"].get("detail", detail)
            return IMAGE_LOW_DETAIL_TOKENS if detail == "low" else IMAGE_HIGH_DETAIL_TOKENS
        if kind in _AUDIO_PARTS:
            return AUDIO_PART_TOKENS
        return OTHER_MEDIA_PART_TOKENS

    def tools(self, tools: Iterable[Any]) -> int:
        """The cookbook's ``num_tokens_for_tools``, tolerant of what it did not cover.

        Missing descriptions count as empty; schema keywords beyond type/description/enum
        (nested ``properties``, ``items``...) add their JSON; non-function tools count as JSON.
        """
        n = 0
        functions = 0
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping):
                n += self.text(tool)
                continue
            functions += 1
            n += self.func_init + self.text(f"{fn.get('name', '')}:{_desc(fn)}")
            params = fn.get("parameters")
            props = params.get("properties") if isinstance(params, Mapping) else None
            if not isinstance(props, Mapping) or not props:
                continue
            n += 3  # prop_init
            for p_name, schema in props.items():
                n += 3  # prop_key
                if not isinstance(schema, Mapping):
                    n += self.text(f"{p_name}::") + self.text(schema)
                    continue
                enum = schema.get("enum")
                if isinstance(enum, list):
                    n += -3 + sum(3 + self.text(item) for item in enum)  # enum_init, enum_item
                p_type = schema.get("type", "")
                p_type = p_type if isinstance(p_type, str) else _json(p_type)
                n += self.text(f"{p_name}:{p_type}:{_desc(schema)}")
                extra = {k: v for k, v in schema.items() if k not in _PROP_KEYS}
                n += self.text(extra) if extra else 0
        return n + (12 if functions else 0)  # func_end

    def responses(self, body: Mapping[str, Any]) -> int:
        """Responses API: ``instructions`` as a system message, then ``input`` items, then tools.

        The formula is the chat one applied to the messages the items stand for; it is less
        tested against the API than chat, so treat it as an estimate.
        """
        n = _REPLY_PRIMING
        instructions = body.get("instructions")
        if instructions:
            n += self.message({"role": "system", "content": instructions})
        items = body.get("input")
        if isinstance(items, list):
            n += sum(self.item(i) for i in items)
        elif items is not None:
            n += self.message({"role": "user", "content": items})
        tools = [_as_chat_tool(t) for t in _listed(body.get("tools"))]
        return n + self.tools(tools) if tools else n

    def item(self, item: Any) -> int:
        if not isinstance(item, Mapping):
            return self.message(item)
        kind = item.get("type", "message")
        if kind == "message" or "role" in item:
            return self.message({"role": item.get("role"), "content": item.get("content")})
        if kind == "function_call":
            return self.per_message + self.text(item.get("name")) + self.text(item.get("arguments"))
        if kind == "function_call_output":
            return self.per_message + self.content(item.get("output"))
        return self.per_message + self.text({k: v for k, v in item.items() if k not in _ITEM_IDS})


_PROP_KEYS = frozenset({"type", "description", "enum"})
_ITEM_IDS = frozenset({"id", "status"})


def _listed(value: Any) -> list[Any]:
    """A JSON array as a list; a lone value (a client's mistake) as a list of one."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _desc(schema: Mapping[str, Any]) -> str:
    desc = schema.get("description") or ""
    desc = desc if isinstance(desc, str) else _json(desc)
    return desc.removesuffix(".")  # as the cookbook does


def _as_chat_tool(tool: Any) -> Any:
    """Responses tools are flat (``{"type": "function", "name": ...}``); chat nests them."""
    if isinstance(tool, Mapping) and tool.get("type") == "function" and "function" not in tool:
        return {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
    return tool
