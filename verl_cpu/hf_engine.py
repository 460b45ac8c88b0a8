"""Pure PyTorch / transformers generation engine for verl's rollout (and teacher) server on CPU.

The engine owns a HF causal LM and serves token-in/token-out requests with vLLM semantics:

* per-token log-probs are vLLM ``processed_logprobs``: ``log_softmax(logits / temperature)`` of the
  sampled token, taken before top-k/top-p truncation (plain ``log_softmax`` for greedy);
* sampling is top-k then top-p (vLLM's ``apply_top_k_top_p``) with an exponential race
  (``argmax(probs / Exp(1))``), each request drawing from its own ``torch.Generator``;
* prompt log-probs use vLLM's layout as verl's ``extract_prompt_logprobs`` returns it
  (row ``i`` predicts token ``i + 1``; the last row is a zero dummy);
* concurrent ``generate`` calls are batched dynamically (left padding + KV cache).

No verl or Ray code lives here; the server actor wraps this class.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["GenerationResult", "HFGenerationEngine", "apply_top_k_top_p"]

_SAMPLING_EPS = 1e-5
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass
class GenerationResult:
    """Output of one request.

    ``prompt_logprobs`` is ``(ids, logprobs)``, each ``len(prompt_ids)`` rows of ``K`` columns
    (``K = max(k, 1)``), or ``None`` when prompt log-probs were not requested.
    """

    token_ids: list[int]
    log_probs: list[float]
    stop_reason: str
    prompt_logprobs: tuple[list[list[int]], list[list[float]]] | None = None
    weight_version: int = 0

    def extra_fields(self) -> dict[str, Any]:
        """The ``extra_fields`` entries verl's vLLM server adds for prompt log-probs."""
        if self.prompt_logprobs is None:
            return {}
        ids, lps = self.prompt_logprobs
        return {"prompt_ids": ids, "prompt_logprobs": lps}


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_k: int  # 0 = off
    top_p: float  # 1.0 = off
    stop_ids: frozenset[int]
    prompt_logprobs: int | None
    generator: torch.Generator
    future: asyncio.Future
    token_ids: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    prompt_lp: tuple[list[list[int]], list[list[float]]] | None = None
    weight_version: int = 0

    def result(self) -> GenerationResult:
        return GenerationResult(
            token_ids=list(self.token_ids),
            log_probs=list(self.log_probs),
            stop_reason=self.stop_reason or "aborted",
            prompt_logprobs=self.prompt_lp,
            weight_version=self.weight_version,
        )


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None) -> torch.Tensor:
    """Mask ``logits`` (B, V) outside the per-row top-k then top-p support with ``-inf`` (vLLM's rule).

    ``top_k`` is a (B,) long tensor (use V to disable a row), ``top_p`` a (B,) float tensor
    (1.0 disables a row). Ties at the k-th logit are kept, and at least one token always survives.
    """
    if top_k is None and top_p is None:
        return logits
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    if top_k is not None:
        kth = (logits_sort.size(1) - top_k.to(torch.long)).clamp(0, logits_sort.size(1) - 1)
        kth_value = logits_sort.gather(1, kth.unsqueeze(1))
        logits_sort = logits_sort.masked_fill(logits_sort < kth_value, float("-inf"))
    if top_p is not None:
        probs_sum = logits_sort.softmax(dim=-1).cumsum(dim=-1)
        top_p_mask = probs_sum <= 1 - top_p.to(probs_sum.dtype).unsqueeze(1)
        top_p_mask[:, -1] = False
        logits_sort = logits_sort.masked_fill(top_p_mask, float("-inf"))
    return torch.empty_like(logits_sort).scatter_(-1, logits_idx, logits_sort)


class HFGenerationEngine:
    """Dynamic-batching HF generation engine with vLLM-compatible sampling and log-probs.

    Args:
        model_path: local directory with a HF causal LM and its tokenizer.
        dtype: model dtype name ("float32", "bfloat16", "float16").
        max_batch_size: most requests decoded together.
        batch_wait_ms: how long the batcher waits for more requests once one is queued.
        seed: engine seed. A request without its own ``seed`` gets one derived from (engine seed, prompt ids,
            how many requests with the same prompt came before, since the last :meth:`set_sampling_epoch`), so
            samples do not depend on the order in which concurrent requests of different prompts arrive: the
            same run is reproducible, and so is a run resumed from a checkpoint.
        attn_implementation: passed to ``from_pretrained`` ("sdpa" or "eager").
        max_model_len: context limit (defaults to ``config.max_position_embeddings``).
        prefill_chunk_logits: most logits (batch x positions x vocab) held at once while
            computing prompt log-probs; the prompt is prefilled in column chunks to stay under it.
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        max_batch_size: int = 64,
        batch_wait_ms: float = 5,
        seed: int = 0,
        attn_implementation: str = "sdpa",
        max_model_len: int | None = None,
        prefill_chunk_logits: int = 1 << 27,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=_DTYPES[dtype], attn_implementation=attn_implementation
        )
        self.model.eval()
        self.model.requires_grad_(False)
        self.max_batch_size = max(1, int(max_batch_size))
        self.prefill_chunk_logits = max(1, int(prefill_chunk_logits))
        self.batch_wait_ms = float(batch_wait_ms)
        self.seed = seed
        self._prompt_counts: dict[bytes, int] = {}
        self._sampling_epoch: int | None = None
        self.weight_version = 0
        self.max_model_len = int(max_model_len or getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])

        eos: set[int] = set()
        for source in (
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        ):
            if source is None:
                continue
            eos.update([source] if isinstance(source, int) else list(source))
        self.eos_token_ids = frozenset(int(i) for i in eos)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (min(self.eos_token_ids) if self.eos_token_ids else 0))

        self._model_lock = threading.Lock()
        self._abort_running = False  # read by the decode thread each step
        self._paused = False
        self._reject_while_paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[_Request] = collections.deque()
        self._num_pending = 0  # queued + in flight
        self.num_batches = 0  # batches decoded so far (observability / tests)

    # ------------------------------------------------------------------ public API

    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any]) -> GenerationResult:
        """Generate a continuation of ``prompt_ids`` with vLLM-style ``sampling_params``."""
        self._ensure_started()
        req = self._make_request(prompt_ids, dict(sampling_params or {}))
        while self._paused:
            if self._reject_while_paused:
                return GenerationResult([], [], "aborted", None, self.weight_version)
            await self._resume_event.wait()
        self._num_pending += 1
        self._idle_event.clear()
        self._queue.append(req)
        self._queue_event.set()
        return await req.future

    async def abort_all(self, reject_new: bool = False) -> dict[str, int]:
        """Abort queued and in-flight requests and pause the engine until ``resume()``.

        Aborted requests return ``stop_reason="aborted"`` with the tokens they had. Requests that
        arrive while paused wait for ``resume()`` (or return aborted at once if ``reject_new``).
        Returns once nothing is running, so weights can be loaded safely afterwards.
        """
        self._ensure_started()
        self._paused = True
        self._reject_while_paused = reject_new
        self._resume_event.clear()
        aborted = len(self._queue)
        while self._queue:
            req = self._queue.popleft()
            req.stop_reason = "aborted"
            req.weight_version = self.weight_version
            self._finish(req)
            self._num_pending -= 1
        if self._num_pending == 0:
            self._idle_event.set()
        in_flight = self._num_pending
        aborted += in_flight
        if in_flight:
            self._abort_running = True
            try:
                await self._idle_event.wait()
            finally:
                self._abort_running = False
        return {"aborted_count": aborted}

    def resume(self) -> None:
        """Accept (and release parked) requests again after ``abort_all``."""
        self._paused = False
        self._reject_while_paused = False
        if self._loop is not None:
            self._resume_event.set()

    @property
    def paused(self) -> bool:
        """Whether the engine is paused by ``abort_all``."""
        return self._paused

    @property
    def num_pending(self) -> int:
        """Queued plus in-flight requests."""
        return self._num_pending

    async def wait_for_drain(self) -> None:
        """Wait until no request is queued or in flight."""
        self._ensure_started()
        await self._idle_event.wait()

    async def shutdown(self) -> None:
        """Abort everything and stop the batching task."""
        if self._loop is None:
            return
        await self.abort_all(reject_new=True)
        task, self._worker = self._worker, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._loop = None

    def load_weights(
        self,
        named_tensors: Iterable[tuple[str, torch.Tensor]],
        *,
        bump_version: bool = True,
    ) -> dict[str, Any]:
        """Copy ``(name, tensor)`` pairs (HF ``state_dict`` names) into the model in place.

        Tied parameters (e.g. ``lm_head.weight`` / ``model.embed_tokens.weight``) are filled by
        either name. A missing or extra ``model.`` prefix is tolerated. Call it while nothing is
        generating (after ``abort_all``); it waits for a running batch otherwise. Returns counts
        and names of loaded / missing / unexpected tensors and the new ``weight_version``.
        Pass ``bump_version=False`` for all but the last bucket of a bucketed update.
        """
        state = self.model.state_dict(keep_vars=True)
        loaded: set[str] = set()
        unexpected: list[str] = []
        with self._model_lock, torch.no_grad():
            for name, tensor in named_tensors:
                key = self._resolve_name(name, state)
                if key is None:
                    unexpected.append(name)
                    continue
                target = state[key]
                if hasattr(tensor, "full_tensor"):  # DTensor
                    tensor = tensor.full_tensor()
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"shape mismatch for {name!r}: got {tuple(tensor.shape)}, expected {tuple(target.shape)}"
                    )
                target.data.copy_(tensor.detach().to(device=target.device, dtype=target.dtype))
                loaded.add(key)
        loaded_ptrs = {state[k].data_ptr() for k in loaded}
        missing = [k for k, v in state.items() if k not in loaded and v.data_ptr() not in loaded_ptrs]
        if bump_version:
            self.weight_version += 1
        return {
            "loaded": len(loaded),
            "missing": len(missing),
            "unexpected": len(unexpected),
            "missing_names": missing,
            "unexpected_names": unexpected,
            "weight_version": self.weight_version,
        }

    # ------------------------------------------------------------------ request handling

    @staticmethod
    def _resolve_name(name: str, state: dict[str, torch.Tensor]) -> str | None:
        if name in state:
            return name
        for cand in (f"model.{name}", name.removeprefix("model.")):
            if cand in state:
                return cand
        return None

    def _make_request(self, prompt_ids: list[int], sp: dict[str, Any]) -> _Request:
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise ValueError("prompt_ids must not be empty")
        if max(prompt_ids) >= self.vocab_size or min(prompt_ids) < 0:
            raise ValueError(f"prompt token id out of range [0, {self.vocab_size})")
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise ValueError(
                f"prompt length {len(prompt_ids)} leaves no room within max_model_len={self.max_model_len}"
            )
        rep = sp.get("repetition_penalty")
        if rep is not None and float(rep) != 1.0:
            raise ValueError(f"repetition_penalty={rep} is not supported by the HF engine (only 1.0)")
        for key in ("presence_penalty", "frequency_penalty", "min_p"):
            if sp.get(key) not in (None, 0, 0.0):
                raise ValueError(f"{key}={sp[key]} is not supported by the HF engine")
        if sp.get("n") not in (None, 1):
            raise ValueError("n > 1 is not supported; send separate requests")

        max_tokens = sp.get("max_tokens", sp.get("max_new_tokens"))
        max_tokens = room if max_tokens is None else int(max_tokens)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        max_tokens = min(max_tokens, room)

        temperature = float(sp.get("temperature", 1.0) if sp.get("temperature") is not None else 1.0)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        top_k = sp.get("top_k")
        top_k = 0 if top_k is None or int(top_k) <= 0 else min(int(top_k), self.vocab_size)
        top_p = float(sp.get("top_p") if sp.get("top_p") is not None else 1.0)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")

        stop_ids = {int(t) for t in (sp.get("stop_token_ids") or [])}
        if not sp.get("ignore_eos", False):
            stop_ids |= self.eos_token_ids

        plp = sp.get("prompt_logprobs")
        if plp is not None:
            plp = int(plp)
            if plp < 0:  # vLLM's -1 means the whole vocabulary
                plp = self.vocab_size
            plp = min(plp, self.vocab_size)

        seed = sp.get("seed")
        if seed is None:
            seed = self._derived_seed(prompt_ids)
        return _Request(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_ids=frozenset(stop_ids),
            prompt_logprobs=plp,
            generator=torch.Generator().manual_seed(int(seed)),
            future=asyncio.get_running_loop().create_future(),
        )

    def set_sampling_epoch(self, epoch: int | None) -> None:
        """Derive request seeds from (engine seed, ``epoch``, prompt, occurrence index since the epoch began).
        The rollout server sets the training step of the weights it serves: a run resumed from a checkpoint
        then samples what the uninterrupted run sampled, without carrying the occurrence counts over."""
        if epoch != self._sampling_epoch:
            self._sampling_epoch = epoch
            self._prompt_counts.clear()

    def _derived_seed(self, prompt_ids: list[int]) -> int:
        """Seed of the next request for ``prompt_ids``: a hash of (engine seed, sampling epoch when set, prompt,
        occurrence index)."""
        prompt = tuple(int(t) for t in prompt_ids)
        base = (self.seed, prompt) if self._sampling_epoch is None else (self.seed, self._sampling_epoch, prompt)
        key = hashlib.blake2b(repr(base).encode(), digest_size=8).digest()
        occurrence = self._prompt_counts.get(key, 0)
        self._prompt_counts[key] = occurrence + 1
        digest = hashlib.blake2b(key + occurrence.to_bytes(8, "little"), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 2

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        # (Re)bind to the running loop, e.g. a fresh ``asyncio.run`` in tests.
        self._loop = loop
        self._queue.clear()
        self._num_pending = 0
        self._queue_event = asyncio.Event()
        self._idle_event = asyncio.Event()
        self._idle_event.set()
        self._resume_event = asyncio.Event()
        if not self._paused:
            self._resume_event.set()
        self._worker: asyncio.Task | None = loop.create_task(self._batch_loop())

    def _finish(self, req: _Request) -> None:
        if not req.future.done():
            req.future.set_result(req.result())

    async def _batch_loop(self) -> None:
        while True:
            while not self._queue:
                self._queue_event.clear()
                await self._queue_event.wait()
            deadline = time.monotonic() + self.batch_wait_ms / 1000.0
            while len(self._queue) < self.max_batch_size and time.monotonic() < deadline:
                self._queue_event.clear()
                try:
                    await asyncio.wait_for(self._queue_event.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            if not batch:  # aborted while waiting
                continue
            self.num_batches += 1
            try:
                await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 - surfaced on each request's future
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(exc)
            for req in batch:
                self._finish(req)
            self._num_pending -= len(batch)
            if self._num_pending == 0:
                self._idle_event.set()

    # ------------------------------------------------------------------ model work (runs in a thread)

    def _forward(self, **kwargs: Any) -> Any:
        try:
            return self.model(**kwargs)
        except TypeError:
            if "logits_to_keep" not in kwargs:
                raise
            kwargs.pop("logits_to_keep")
            return self.model(**kwargs)

    def _prefill(
        self,
        batch: list[_Request],
        input_ids: torch.Tensor,
        attn: torch.Tensor,
        position_ids: torch.Tensor,
        lens: list[int],
    ) -> tuple[torch.Tensor, Any]:
        """Run the prompt forward; fill prompt log-probs of the rows that ask for them.

        Without prompt log-probs only the last position's logits are computed. With them the
        prompt is prefilled in column chunks so that at most ``prefill_chunk_logits`` logits exist
        at once; each chunk is reduced to (top-k) log-probs right away. Prompt log-probs use the
        raw logits (no temperature), in vLLM's layout as verl's ``extract_prompt_logprobs``
        returns it: row ``t`` holds the distribution predicting prompt token ``t + 1``, and the
        last row is a dummy of zeros (ids 0, log-probs 0.0), ``max(k, 1)`` columns each.
        """
        want = [i for i, r in enumerate(batch) if r.prompt_logprobs is not None]
        if not want:
            out = self._forward(
                input_ids=input_ids,
                attention_mask=attn,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
            )
            return out.logits[:, -1, :], out.past_key_values
        bsz, width = input_ids.shape
        chunk = max(1, self.prefill_chunk_logits // (bsz * self.vocab_size))
        acc: dict[int, tuple[list[list[int]], list[list[float]]]] = {i: ([], []) for i in want}
        cache = None
        last = None
        for s in range(0, width, chunk):
            e = min(width, s + chunk)
            out = self.model(
                input_ids=input_ids[:, s:e],
                attention_mask=attn[:, :e],
                position_ids=position_ids[:, s:e],
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            for i in want:
                # padded column c (prompt index c - start) predicts the token in column c + 1
                lo, hi = max(s, width - lens[i]), min(e, width - 1)
                if lo >= hi:
                    continue
                logp = torch.log_softmax(out.logits[i, lo - s : hi - s].float(), dim=-1)
                k = batch[i].prompt_logprobs
                if k == 0:
                    ids = input_ids[i, lo + 1 : hi + 1].unsqueeze(1)
                    vals = logp.gather(1, ids)
                else:
                    vals, ids = torch.topk(logp, k, dim=-1)
                acc[i][0].extend(ids.tolist())
                acc[i][1].extend(vals.tolist())
            last = out.logits[:, -1, :]
            del out
        for i in want:
            k = max(batch[i].prompt_logprobs, 1)
            acc[i][0].append([0] * k)
            acc[i][1].append([0.0] * k)
            batch[i].prompt_lp = acc[i]
        return last, cache

    def _sample(self, logits: torch.Tensor, reqs: list[_Request]) -> tuple[list[int], list[float]]:
        """Pick one token per row; return it and its processed log-prob."""
        logits = logits.float()
        temps = torch.tensor([r.temperature for r in reqs], dtype=torch.float32)
        greedy = temps < _SAMPLING_EPS
        scaled = logits / torch.where(greedy, torch.ones_like(temps), temps).unsqueeze(1)
        logprobs = torch.log_softmax(scaled, dim=-1)
        tokens = logits.argmax(dim=-1)
        rows = [i for i, r in enumerate(reqs) if r.temperature >= _SAMPLING_EPS]
        if rows:
            sub = scaled[rows]
            top_k = top_p = None
            if any(reqs[i].top_k > 0 for i in rows):
                top_k = torch.tensor([reqs[i].top_k or sub.shape[1] for i in rows], dtype=torch.long)
            if any(reqs[i].top_p < 1.0 for i in rows):
                top_p = torch.tensor([reqs[i].top_p for i in rows], dtype=torch.float32)
            probs = torch.softmax(apply_top_k_top_p(sub, top_k, top_p), dim=-1)
            for j, i in enumerate(rows):
                q = torch.empty_like(probs[j]).exponential_(generator=reqs[i].generator)
                tokens[i] = (probs[j] / q).argmax()
        lps = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        return tokens.tolist(), lps.tolist()

    def _run_batch(self, batch: list[_Request]) -> None:
        with self._model_lock, torch.inference_mode():
            version = self.weight_version
            for req in batch:
                req.weight_version = version
            if self._abort_running:
                for req in batch:
                    req.stop_reason = "aborted"
                return
            lens = [len(r.prompt_ids) for r in batch]
            width = max(lens)
            bsz = len(batch)
            input_ids = torch.full((bsz, width), self.pad_token_id, dtype=torch.long)
            attn = torch.zeros((bsz, width), dtype=torch.long)
            for i, r in enumerate(batch):
                input_ids[i, width - lens[i] :] = torch.tensor(r.prompt_ids, dtype=torch.long)
                attn[i, width - lens[i] :] = 1
            position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
            logits, cache = self._prefill(batch, input_ids, attn, position_ids, lens)
            active = list(batch)
            positions = position_ids[:, -1]
            while True:
                if self._abort_running:
                    for r in active:
                        r.stop_reason = "aborted"
                    return
                tokens, lps = self._sample(logits, active)
                keep: list[int] = []
                for i, (r, tok, lp) in enumerate(zip(active, tokens, lps)):
                    r.token_ids.append(tok)
                    r.log_probs.append(lp)
                    if tok in r.stop_ids:
                        r.stop_reason = "stop"
                    elif len(r.token_ids) >= r.max_tokens:
                        r.stop_reason = "length"
                    else:
                        keep.append(i)
                if not keep:
                    return
                next_ids = torch.tensor(tokens, dtype=torch.long)
                if len(keep) < len(active):
                    idx = torch.tensor(keep, dtype=torch.long)
                    cache.batch_select_indices(idx)
                    attn, positions, next_ids = attn[idx], positions[idx], next_ids[idx]
                    active = [active[i] for i in keep]
                attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
                positions = positions + 1
                out = self.model(
                    input_ids=next_ids.unsqueeze(1),
                    attention_mask=attn,
                    position_ids=positions.unsqueeze(1),
                    past_key_values=cache,
                    use_cache=True,
                )
                logits = out.logits[:, -1, :]
                cache = out.past_key_values
