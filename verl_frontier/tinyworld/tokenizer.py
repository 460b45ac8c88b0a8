"""A character-level tokenizer for the tiny world, saved as a ``PreTrainedTokenizerFast``.

Vocabulary: special tokens, then every printable ASCII character and newline (so any English prompt
verl or a user may add still tokenizes without <|unk|>). Chat template: every turn is
``<|role|>content<|endoftext|>``; the generation prompt is ``<|assistant|>``. ``<|endoftext|>``
is the eos token and ends every assistant answer in training.
"""

from __future__ import annotations

import string

from transformers import PreTrainedTokenizerFast

PAD = "<|pad|>"
EOS = "<|endoftext|>"
UNK = "<|unk|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
SPECIAL_TOKENS = [PAD, EOS, UNK, USER, ASSISTANT, SYSTEM]
CHARS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # 95 printable + "\n"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set content = message['content'] %}"
    "{% else %}{% set content = message['content'] | map(attribute='text') | join('') %}{% endif %}"
    "{{ '<|' + message['role'] + '|>' + content + '<|endoftext|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A ``Qwen2Tokenizer`` whose BPE has one token per character and no merges.

    It must be Qwen2's own tokenizer class: ``AutoTokenizer`` loads a directory whose ``config.json`` says
    ``model_type: qwen2`` as ``Qwen2Tokenizer`` whatever ``tokenizer_config.json`` says (transformers 5), and
    that class re-creates its byte-level pre-tokenizer, so a plain ``WordLevel`` tokenizer silently loses
    spaces and newlines once saved beside a Qwen2 model. verl's Qwen chat builder also needs ``"\\n"`` to be
    exactly one token. Vocabulary entries are the byte-level spellings of the characters (space is ``Ġ``).
    """
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_unicode = bytes_to_unicode()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in CHARS:
        vocab["".join(byte_to_unicode[b] for b in c.encode())] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=UNK,
        bos_token=None,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        model_max_length=512,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def char_ids(tokenizer) -> dict[str, int]:
    """Map from each character and special token (as written in text) to its id, for fast batch encoding."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_unicode = bytes_to_unicode()
    vocab = tokenizer.get_vocab()
    mapping = {tok: vocab[tok] for tok in SPECIAL_TOKENS}
    for c in CHARS:
        mapping[c] = vocab["".join(byte_to_unicode[b] for b in c.encode())]
    return mapping
