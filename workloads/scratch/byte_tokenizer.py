"""A byte-level tokenizer that needs no training: token i is byte i, plus `<|endoftext|>`.

Any UTF-8 text encodes to its bytes and decodes back unchanged, so a model built from scratch can
be trained on any dataset without a vocabulary step.
"""

from __future__ import annotations

from typing import Any

EOS = "<|endoftext|>"
EOS_ID = 256
VOCAB_SIZE = 257


def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (the ByteLevel pre-tokenizer's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + shifted)
            shifted += 1
    return chars


def build(model_max_length: int) -> Any:
    """A transformers fast tokenizer over the 256 bytes, EOS doubling as BOS and padding."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: b for b, char in byte_alphabet().items()}
    vocab[EOS] = EOS_ID
    # BPE with no merges splits every word into single characters, i.e. single bytes.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(EOS, special=True)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS,
                                   pad_token=EOS, model_max_length=model_max_length)
