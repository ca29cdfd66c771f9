"""Prompt-injection signals for the outputs of LLM pipelines: in the `prompt` a user wrote (direct injection) and,
separately, in the `context` documents a pipeline fed its model (indirect injection, the more dangerous: nobody
expects instructions inside a retrieved web page or a tool's output).

Each detector is a :class:`routing.signals.Signal` with its own reason code, so a policy rule or an expert queue
can tell them apart: ``prompt_instruction_like`` / ``context_instruction_like``, and the smuggling signals of
``routing.signals`` (zero-width and bidirectional characters, long encoded payloads) renamed per field.

What counts as instruction-like text is written from the published attack taxonomy (OWASP LLM01; Greshake et al.,
"Not what you've signed up for", 2023; Perez and Ribeiro, "Ignore previous prompt", 2022), not fitted to a data
set: attempts to override earlier instructions, to reassign the model's role or mode, to extract its system
prompt, forged role or delimiter markers, and exfiltration through links or messages. English, German, French,
Spanish and Italian phrasings of the override. A detector of phrasings misses paraphrases it has never seen and
hits quotations of attacks (a security article quoting one): it is a routing signal that sends an item to people,
never a verdict. `bench/bench_injection.py` measures it on data it was not written from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from routing.policy import InjectionAction
from routing.signals import Action, Signal, TextBatch, encoded_payload, zero_width_or_bidi

__all__ = ["INSTRUCTION_PATTERNS", "injection_signals", "injection_texts", "instruction_like",
           "item_injection_signals"]

_W = r"[^\S\x00]+"  # whitespace within one item (the batch joins items with NUL)
_ANY = r"[^\x00]{0,40}?"  # a few words, never across items

INSTRUCTION_PATTERNS: dict[str, str] = {
    # "ignore all previous instructions", "disregard the above rules", "forget everything you were told"
    "override": (
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon){_W}{_ANY}"
        rf"\b(?:previous|prior|preceding|above|earlier|original|initial|all|your){_W}"
        rf"(?:{_ANY})?(?:instructions?|rules|directions|directives|prompts?|guidelines|guardrails|constraints|"
        rf"restrictions|polic(?:y|ies)|context|commands?|programming|training)\b"
        rf"|\bforget{_W}(?:everything|all){_W}(?:you|that|above|before)"
        rf"|\b(?:new|updated|real|actual){_W}(?:instructions?|directives?|task|rules){_W}?:"
        rf"|\bsupersedes?{_W}(?:all{_W})?(?:prior|previous|earlier)\b|\byour{_W}(?:rules|instructions){_W}have{_W}changed\b"
        rf"|\b(?:safety|security){_W}(?:protocols?|checks?|filters?|guidelines){_W}(?:are{_W})?(?:disabled|off|lifted)\b"
        rf"|\bskip{_W}(?:all{_W})?(?:safety|security){_W}checks\b|\byour{_W}real{_W}task{_W}is\b"
    ),
    # text addressed to the model inside data, or forged system notes: "Note to the bot", a document speaking to
    # whatever model reads it, "SYSTEM NOTE:", "IMPORTANT for the assistant"
    "addressed_to_model": (
        rf"\bnote{_W}(?:to|for){_W}(?:the{_W})?(?:bot|ai|assistant|model|llm|agent)s?\b"
        rf"|\b(?:if{_W}you{_W}are|attention|dear){_W}(?:an?{_W})?(?:ai|llm|language{_W}model)(?:{_W}(?:assistant|agent|model))?\b"
        rf"|\b(?:ai|llm){_W}(?:assistant|agent|model)s?{_W}(?:reading|reviewing|processing|integrating|summari[sz]ing)\b"
        rf"|\bfor{_W}(?:the{_W})?(?:ai|llm){_W}(?:assistant|agent|coding{_W}agent|model)s?\b"
        rf"|\b(?:important|attention|note){_W}(?:for|to){_W}the{_W}(?:assistant|model|ai)\b"
        rf"|\bsystem{_W}(?:note|notice|update|message|override|alert)\b{_W}?:"
        rf"|\bsystemhinweis\b|\bnote{_W}système\b|\bnota{_W}del{_W}sistema\b|\bnota{_W}di{_W}sistema\b"
    ),
    # orders about the model's own reply or memory: "append this token to the end of your reply", "include the
    # doc_id in your summary", "save this to your long-term memory"
    "reply_or_memory": (
        rf"\b(?:append|add|include|insert|put){_W}{_ANY}\b(?:to|in|at|into){_W}(?:the{_W}end{_W}of{_W})?"
        rf"(?:your|every|each|any){_W}(?:future{_W})?(?:reply|replies|response|responses|answer|answers|summary|"
        rf"summaries|review|output)\b"
        rf"|\b(?:save|store|write|remember){_W}{_ANY}\b(?:to|in|into){_W}your{_W}(?:long[-{_W}]term{_W})?memory\b"
        rf"|\brepeat{_W}(?:it|this|these|that){_W}verbatim\b"
    ),
    # instructions to invoke a tool inside data: "call delete_file on ...", "use send_email to ..."
    "tool_call": (
        rf"\b(?:call|invoke|run|execute|use|trigger){_W}(?:the{_W})?[a-z]+_[a-z_]+(?:{_W}tool)?\b"
        rf"{_W}(?:on|to|with|for)\b"
    ),
    "override_other_languages": (
        rf"\bignorier(?:e|en)?{_W}{_ANY}\b(?:anweisungen|instruktionen|regeln|vorgaben)\b"
        rf"|\bvergiss{_W}{_ANY}\b(?:anweisungen|regeln)\b"
        rf"|\bignor(?:e|ez|er){_W}{_ANY}\b(?:instructions|consignes|règles)\b"
        rf"|\bignorier(?:e|en)?{_W}{_ANY}\b(?:richtlinien|vorgaben)\b|\bneue{_W}anweisungen\b"
        rf"|\b(?:ignora|olvida|ignore){_W}{_ANY}\b(?:instrucciones|reglas|indicaciones)\b"
        rf"|\b(?:ignora|dimentica){_W}{_ANY}\b(?:istruzioni|regole)\b"
    ),
    # "you are now DAN", "from now on you will act as", "pretend to be", "enter developer mode"
    "role": (
        rf"\byou{_W}are{_W}now\b|\bfrom{_W}now{_W}on\b|\bpretend{_W}(?:to{_W}be|you{_W}are|that)\b"
        rf"|\bact{_W}as{_W}(?:an?{_W})?(?:unrestricted|unfiltered|evil|jailbroken|dan\b)"
        rf"|\b(?:developer|god|jailbreak|unrestricted|dan){_W}mode\b|\bdo{_W}anything{_W}now\b"
        rf"|\bno{_W}(?:longer{_W})?(?:bound|restricted|limited){_W}by\b"
        rf"|\bwithout{_W}(?:any{_W})?(?:restrictions|filters|censorship|limitations)\b"
    ),
    # "reveal your system prompt", "print the hidden instructions above"
    "extraction": (
        rf"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell{_W}me|give{_W}me|what{_W}(?:is|are))"
        rf"{_W}{_ANY}\b(?:system{_W}prompt|system{_W}message|hidden{_W}(?:prompt|instructions)|"
        rf"initial{_W}(?:prompt|instructions)|(?:your|the){_W}instructions)\b"
        rf"|\b(?:the|your){_W}(?:exact{_W})?instructions{_W}you{_W}(?:were|have{_W}been){_W}given\b"
        rf"|\beverything{_W}in{_W}your{_W}context{_W}window\b|\brepeat{_W}the{_W}words{_W}above\b"
        rf"|\bsystemanweisungen\b|\binstructions{_W}syst[èe]me\b|\binstrucciones{_W}del{_W}sistema\b"
        rf"|\bistruzioni{_W}di{_W}sistema\b"
    ),
    # forged role and delimiter markers: "</system>", "[INST]", "<|im_start|>", "### System:", "BEGIN NEW PROMPT"
    "delimiter": (
        r"</?\s*(?:system|assistant|instructions?|im_start|im_end|sys)\s*>|\[/?INST\]|<\|(?:im_start|im_end|system|"
        r"endoftext)\|>|(?:^|(?<=[\n\x00]))[^\S\x00]*#{2,}[^\S\x00]*(?:system|instructions?|new\s+instructions?)\b"
        r"|(?:^|(?<=[\n\x00]))[^\S\x00]*(?:system|assistant)[^\S\x00]*:\s"
        rf"|\b(?:begin|start|end){_W}(?:of{_W})?(?:new{_W}|system{_W}|admin{_W})(?:prompt|instructions?|message)\b"
    ),
    # exfiltration: a markdown image whose URL carries data, or an order to send something somewhere
    "exfiltration": (
        r"!\[[^\]\x00]*\]\(\s*https?://[^)\s\x00]*[?&][^)\s\x00]*=\s*[^)\x00]*\)"
        rf"|\b(?:send|forward|email|post|upload|transmit|exfiltrate){_W}{_ANY}"
        rf"\bto{_W}(?:https?://|[\w.+-]+@[\w-]+\.[\w.]+|this{_W}(?:url|address|endpoint|webhook))"
    ),
}
_INSTRUCTIONS = re.compile("|".join(f"(?:{pattern})" for pattern in INSTRUCTION_PATTERNS.values()),
                           re.IGNORECASE | re.MULTILINE)


def _char_hits(strings: Sequence[str], pattern: re.Pattern[str]) -> np.ndarray:
    """Items of `strings` where `pattern` matches, by one scan of the NUL-joined batch (no match crosses an item:
    the patterns never match NUL)."""
    joined = "\x00".join(strings)
    ends = np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)) + 1) - 1
    hits = np.zeros(len(strings), dtype=bool)
    starts = [match.start() for match in pattern.finditer(joined)]
    if starts:
        hits[np.searchsorted(ends, np.asarray(starts, dtype=np.int64), side="left")] = True
    return hits


def instruction_like(texts: Sequence[str | None] | TextBatch, *, code: str = "instruction_like",
                     action: Action = "review") -> Signal:
    """Text that reads as instructions to a model (see the module docstring for what that covers)."""
    batch = TextBatch.from_texts(texts)
    return Signal(_char_hits(batch.texts, _INSTRUCTIONS), code, action)


def _contexts(contexts: Sequence[str | Sequence[str] | None]) -> list[str | None]:
    """Each item's documents as one text (a list of documents joined by blank lines)."""
    joined: list[str | None] = []
    for context in contexts:
        if context is None or isinstance(context, str):
            joined.append(context)
        else:
            joined.append("\n\n".join(str(document) for document in context))
    return joined


def _side_signals(texts: Sequence[str | None] | TextBatch, side: str, action: Action) -> list[Signal]:
    """Instruction-like text, zero-width or bidirectional characters and long encoded payloads, coded per side."""
    batch = TextBatch.from_texts(texts)
    return [
        instruction_like(batch, code=f"{side}_instruction_like", action=action),
        _renamed(zero_width_or_bidi(batch), f"{side}_zero_width_or_bidi", action),
        _renamed(encoded_payload(batch), f"{side}_encoded_payload", action),
    ]


def injection_signals(prompts: Sequence[str | None], contexts: Sequence[str | Sequence[str] | None] | None = None,
                      *, prompt_action: Action = "review", context_action: Action = "escalate") -> list[Signal]:
    """The prompt-injection signals of a batch of LLM-pipeline items, prompt and context apart: instruction-like
    text, zero-width or bidirectional characters and long encoded payloads in each. Instructions inside the
    documents a pipeline retrieved escalate by default (an indirect injection), in a user's own prompt they go to
    review."""
    prompt_batch = TextBatch.from_texts(prompts)
    signals = _side_signals(prompt_batch, "prompt", prompt_action)
    if contexts is not None:
        if len(contexts) != len(prompt_batch):
            raise ValueError(f"length mismatch: {len(prompt_batch)} prompts but {len(contexts)} contexts")
        signals += _side_signals(_contexts(contexts), "context", context_action)
    return signals


def _user_text(prompt: Any) -> str | None:
    """What a user wrote: a plain prompt, or the user messages of a chat prompt. System and developer messages are
    the pipeline's own instructions (they read as instructions by design), assistant messages the model's turns."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    return "\n\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")


def _fed_documents(payload: Mapping[str, Any]) -> str | None:
    """The data a pipeline fed its model: the context documents and the output of any tool call in the prompt."""
    context, prompt = payload.get("context"), payload.get("prompt")
    documents = [context] if isinstance(context, str) else list(context or ())
    if isinstance(prompt, list):
        documents += [str(m.get("content", "")) for m in prompt if m.get("role") == "tool"]
    return "\n\n".join(map(str, documents)) if documents else None


def injection_texts(kinds: Sequence[str], texts: Sequence[str | None],
                    payloads: Sequence[Mapping[str, Any] | None]) -> tuple[list[str | None], list[str | None]]:
    """(prompt text, context text) of each LLM-pipeline item, for :func:`item_injection_signals`.

    A ``generation`` or ``pairwise`` item's prompt text is what its user wrote, its context the documents the
    pipeline used and its tools' output. An ``extraction`` item has no prompt; its document (the item's text) is
    its context: data a model reads, in which instructions are as unexpected as in a retrieved page.
    """
    if not len(kinds) == len(texts) == len(payloads):
        raise ValueError(f"length mismatch: {len(kinds)} kinds, {len(texts)} texts, {len(payloads)} payloads")
    unknown = sorted(set(kinds) - {"generation", "pairwise", "extraction"})
    if unknown:
        raise ValueError(f"injection signals read outputs of LLM pipelines only, got kinds {unknown}")
    missing = [i for i, (kind, payload) in enumerate(zip(kinds, payloads))
               if payload is None and kind != "extraction"]
    if missing:
        raise ValueError(f"items {missing[:5]} of a prompted kind have no payload")
    prompts = [None if kind == "extraction" else _user_text(payload["prompt"])  # type: ignore[index]
               for kind, payload in zip(kinds, payloads)]
    contexts = [text if kind == "extraction" else _fed_documents(payload)  # type: ignore[arg-type]
                for kind, text, payload in zip(kinds, texts, payloads)]
    return prompts, contexts


def item_injection_signals(kinds: Sequence[str], texts: Sequence[str | None],
                           payloads: Sequence[Mapping[str, Any] | None], *, prompt_action: InjectionAction,
                           context_action: InjectionAction) -> list[Signal]:
    """The prompt-injection signals of LLM-pipeline items read from their kind, text and payload (see
    :func:`injection_texts`), with the actions a policy gives each side; a side whose action is ``off`` is not
    scanned and yields no signal."""
    prompts, contexts = injection_texts(kinds, texts, payloads)
    signals: list[Signal] = []
    if prompt_action != "off":
        signals += _side_signals(prompts, "prompt", prompt_action)
    if context_action != "off":
        signals += _side_signals(contexts, "context", context_action)
    return signals


def _renamed(signal: Signal, code: str, action: Action) -> Signal:
    return Signal(signal.hits, code, action)
