"""A tiny random-weight Llama with a word-level tokenizer and a chat template, saved as an HF
directory: the hf generation backend runs end to end on it in a second (no real weights)."""

from __future__ import annotations

import torch

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
WORDS = ("the a of to and is in it you that he was for on are with as I his they be at one have this from or had "
         "by word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him two "
         "has look more day could go come did number sound no most people my over know water than call first who "
         "may down side been now find answer list capital rewrite sentence how many 1 2 3 4 5 6 7 8 9 0 . , ? : "
         "Instruction Response system user assistant").split()


def make_tiny_model(path, seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<|im_end|>"]
    # a byte-level BPE (like the real models'), trained in milliseconds on a few sentences
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS[i:i + 12]) for i in range(0, len(WORDS), 5)]
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    vocab = tk.get_vocab()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                  unk_token="<unk>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHAT
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = 1
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_tiny_gguf(path, seed: int = 0, tied: bool = False):
    """A tiny Llama as a GGUF file (2 blocks, hidden 16, a byte-level BPE of 40 tokens, F32
    tensors): what `llmblend convert-model` reads from the packaged GGUF models, in a second.
    tied: no output.weight, so the output layer is the token embedding (as in SmolLM2's and Gemma-3's)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden, ff, n_layer, n_head, n_kv = 16, 32, 2, 4, 2
    kv_dim = n_kv * hidden // n_head
    merges = ["a b", "c d", "Ġ a", "e f", "g h", "i j", "k l", "m n", "o p", "q r"]
    tokens = (["<s>", "</s>", "<unk>"] + list("abcdefghijklmnopqrstuvwxyz") + ["Ġ"]
              + [m.replace(" ", "") for m in merges])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(hidden // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 2] + [1] * (len(tokens) - 3))
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_unk_token_id(2)
    shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,)}
    if not tied:
        shapes["output.weight"] = (len(tokens), hidden)
    for i in range(n_layer):
        shapes.update({f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
                       f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (kv_dim, hidden),
                       f"blk.{i}.attn_v.weight": (kv_dim, hidden), f"blk.{i}.attn_output.weight": (hidden, hidden),
                       f"blk.{i}.ffn_gate.weight": (ff, hidden), f"blk.{i}.ffn_up.weight": (ff, hidden),
                       f"blk.{i}.ffn_down.weight": (hidden, ff)})
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
