//! The toy world's word-level tokenizer: one id per caption word, written as a Hugging Face
//! `tokenizer.json` (+ `tokenizer_config.json`) that [`avdm_import::tokenizer::ClipTokenizer`]
//! reads like any CLIP tokenizer folder.

use std::path::Path;

use serde_json::json;

use super::world::{COLOURS, DIRECTIONS, SHAPES};

pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
pub const UNK: &str = "<unk>";
/// BOS + "a red square moving left" + EOS, padded to 8.
pub const MAX_LENGTH: usize = 8;

/// Every token, in id order: the special tokens, then the caption words.
pub fn tokens() -> Vec<String> {
    let mut out: Vec<String> = [BOS, EOS, UNK, "a", "moving"].iter().map(|s| s.to_string()).collect();
    out.extend(SHAPES.iter().map(|s| s.to_string()));
    out.extend(COLOURS.iter().map(|(s, _)| s.to_string()));
    out.extend(DIRECTIONS.iter().map(|(s, _)| s.to_string()));
    out
}

/// Writes `tokenizer.json` (WordLevel, lower-cased, split on whitespace and punctuation) and
/// `tokenizer_config.json` (special tokens, pad = EOS as SD1.5, `model_max_length` 8) into `dir`.
pub fn write_tokenizer(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens().into_iter().enumerate().map(|(i, t)| (t, json!(i))).collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, BOS), special(1, EOS), special(2, UNK)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    });
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": EOS,
        "model_max_length": MAX_LENGTH,
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("JSON values serialise") + "\n";
    std::fs::write(dir.join("tokenizer.json"), pretty(&tokenizer))?;
    std::fs::write(dir.join("tokenizer_config.json"), pretty(&config))
}
