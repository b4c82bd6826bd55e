//! The CLIP BPE tokenizer of a diffusers `tokenizer/` folder, as transformers' `CLIPTokenizer`
//! calls it in Stable Diffusion pipelines (`padding="max_length", truncation=True`).
//!
//! A folder holds `tokenizer.json` (the `tokenizers` pipeline, used when present) or the slow
//! files `vocab.json` + `merges.txt`, from which the pipeline transformers 5 builds
//! (`CLIPTokenizer.__init__`) is rebuilt here. `tokenizer_config.json` and
//! `special_tokens_map.json` (which wins) give the special tokens and `model_max_length`.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::ImportError;

/// CLIP's word split (transformers `CLIPTokenizer`): special tokens, English contractions,
/// letter runs, single digits, and runs of anything else; whitespace is dropped.
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// Sequence length used when the config gives none (or transformers' "no limit" sentinel).
const DEFAULT_MAX_LENGTH: usize = 77;
/// Above this a `model_max_length` is transformers' `VERY_LARGE_INTEGER` sentinel, not a limit.
const MAX_SENSIBLE_LENGTH: usize = 1 << 20;

/// CLIP's BPE tokenizer producing fixed-length id sequences for the text encoder.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

/// The special tokens and length a folder's configs name, with transformers' CLIP defaults.
struct Specials {
    bos: String,
    eos: String,
    unk: String,
    pad: String,
    max_length: usize,
}

impl ClipTokenizer {
    /// Reads a tokenizer folder: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn from_folder(dir: &Path) -> Result<Self, ImportError> {
        if !dir.is_dir() {
            return Err(ImportError::NotFound { what: "tokenizer folder", path: dir.into() });
        }
        let specials = read_specials(dir)?;
        let fast = dir.join("tokenizer.json");
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let (mut tokenizer, source) = if fast.is_file() {
            let text = read_text(&fast)?;
            let tokenizer = Tokenizer::from_bytes(text.as_bytes()).map_err(tokenizer_error(&fast))?;
            (tokenizer, fast)
        } else if vocab.is_file() && merges.is_file() {
            (build_clip_pipeline(&vocab, &merges, &specials)?, vocab)
        } else {
            return Err(ImportError::NotFound {
                what: "tokenizer files (tokenizer.json, or vocab.json + merges.txt)",
                path: dir.into(),
            });
        };
        // transformers registers every special token as an unsplittable, unnormalized token
        // (so SD2's pad `!` is never merged into `!!`).
        let added: Vec<AddedToken> = [&specials.bos, &specials.eos, &specials.unk, &specials.pad]
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true).normalized(false))
            .collect();
        tokenizer.add_special_tokens(&added);
        tokenizer.with_truncation(None).map_err(tokenizer_error(&source))?;
        tokenizer.with_padding(None);
        let id = |token: &str, role: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| ImportError::Tokenizer {
                path: source.clone(),
                message: format!("the {role} token `{token}` is not in the vocabulary"),
            })
        };
        let (bos, eos, pad) = (id(&specials.bos, "bos")?, id(&specials.eos, "eos")?, id(&specials.pad, "pad")?);
        Ok(Self { tokenizer, bos, eos, pad, max_length: specials.max_length })
    }

    /// Exactly [`Self::max_length`] ids: BOS, the prompt's tokens (cut to `max_length - 2`),
    /// EOS, then padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ImportError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ImportError::Encode { text: text.into(), message: e.to_string() })?;
        let body = self.max_length.saturating_sub(2);
        let tokens = encoding.get_ids();
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend_from_slice(&tokens[..tokens.len().min(body)]);
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(ids)
    }

    /// [`Self::encode`] as a `(1, max_length)` id tensor, the text encoder's input.
    pub fn encode_tensor(&self, text: &str, device: &Device) -> Result<Tensor<2, Int>, ImportError> {
        let ids: Vec<i64> = self.encode(text)?.into_iter().map(i64::from).collect();
        let len = ids.len();
        Ok(Tensor::from_data(TensorData::new(ids, [1, len]), device))
    }

    /// [`Self::encode`] for each text.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, ImportError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    /// `<|startoftext|>`.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// `<|endoftext|>`.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The padding id (SD1.5: EOS; SD2: `!`).
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Length of every encoded sequence (`model_max_length`, 77 for SD).
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

/// Turns an error of the `tokenizers` crate into one naming `path`.
fn tokenizer_error(path: &Path) -> impl Fn(tokenizers::Error) -> ImportError + '_ {
    move |e| ImportError::Tokenizer { path: path.into(), message: e.to_string() }
}

fn read_text(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Io { path: path.into(), source })
}

/// A JSON object file, or `None` when the file does not exist.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, Value>>, ImportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let bad = |message: String| ImportError::Tokenizer { path: path.into(), message };
    match serde_json::from_str(&read_text(path)?).map_err(|e| bad(format!("not valid JSON: {e}")))? {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(bad("is not a JSON object".into())),
    }
}

/// A special token given as `"text"` or as a serialized `AddedToken` (`{"content": "text", ...}`).
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Special tokens and `model_max_length` from `tokenizer_config.json`, overridden by
/// `special_tokens_map.json`; CLIP's defaults for what neither names.
fn read_specials(dir: &Path) -> Result<Specials, ImportError> {
    let eot = "<|endoftext|>".to_string();
    let mut s = Specials {
        bos: "<|startoftext|>".into(),
        eos: eot.clone(),
        unk: eot.clone(),
        pad: eot,
        max_length: DEFAULT_MAX_LENGTH,
    };
    let mut pad_given = false;
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Some(map) = read_json_object(&dir.join(file))? else { continue };
        for (key, slot) in [("bos_token", &mut s.bos), ("eos_token", &mut s.eos), ("unk_token", &mut s.unk)] {
            if let Some(text) = map.get(key).and_then(token_text) {
                *slot = text;
            }
        }
        if let Some(text) = map.get("pad_token").and_then(token_text) {
            s.pad = text;
            pad_given = true;
        }
        if let Some(n) = map.get("model_max_length").and_then(Value::as_f64) {
            if n < 2.0 {
                return Err(ImportError::Tokenizer {
                    path: dir.join(file),
                    message: format!("model_max_length {n} leaves no room for the start and end tokens"),
                });
            }
            s.max_length = if n <= MAX_SENSIBLE_LENGTH as f64 { n as usize } else { DEFAULT_MAX_LENGTH };
        }
    }
    if !pad_given {
        s.pad = s.eos.clone();
    }
    Ok(s)
}

/// `vocab.json` as token -> id.
fn read_vocab(path: &Path) -> Result<HashMap<String, u32>, ImportError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| ImportError::Tokenizer {
        path: path.into(),
        message: format!("not a JSON object of token ids: {e}"),
    })
}

/// `merges.txt` as ranked pairs (a `#version` header and blank lines are skipped).
fn read_merges(path: &Path) -> Result<Vec<(String, String)>, ImportError> {
    let text = read_text(path)?;
    let mut merges = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        match line.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => merges.push((a.to_string(), b.to_string())),
            _ => {
                return Err(ImportError::Tokenizer {
                    path: path.into(),
                    message: format!("line {} is not two space-separated symbols: {line:?}", n + 1),
                });
            }
        }
    }
    Ok(merges)
}

/// transformers' CLIP pipeline from the slow files: NFC, whitespace runs to one space and
/// lowercase; CLIP's word split then byte-level mapping; BPE with the `</w>` word suffix;
/// `<|startoftext|> ... <|endoftext|>` around the tokens.
fn build_clip_pipeline(vocab_path: &Path, merges_path: &Path, s: &Specials) -> Result<Tokenizer, ImportError> {
    let vocab = read_vocab(vocab_path)?;
    let merges = read_merges(merges_path)?;
    let id = |token: &str| {
        vocab.get(token).copied().ok_or_else(|| ImportError::Tokenizer {
            path: vocab_path.into(),
            message: format!("the special token `{token}` is not in the vocabulary"),
        })
    };
    let roberta = RobertaProcessing::new((s.eos.clone(), id(&s.eos)?), (s.bos.clone(), id(&s.bos)?))
        .trim_offsets(false)
        .add_prefix_space(false);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .unk_token(s.unk.clone())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".into())
        .fuse_unk(false)
        .build()
        .map_err(tokenizer_error(merges_path))?;
    let whitespace = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(tokenizer_error(vocab_path))?;
    let split = Split::new(SplitPattern::Regex(CLIP_SPLIT.into()), SplitDelimiterBehavior::Removed, true)
        .map_err(tokenizer_error(vocab_path))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(Normalizers::new(vec![NFC.into(), whitespace.into(), Lowercase.into()])))
        .with_pre_tokenizer(Some(PreTokenizers::new(vec![split.into(), ByteLevel::new(false, true, true).into()])))
        .with_post_processor(Some(roberta))
        .with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}
