//! transformers `CLIPTextModel` (its `CLIPTextTransformer`): the text encoder of Stable Diffusion.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::config::ClipTextConfig;
use super::embeddings::ClipTextEmbeddings;
use super::encoder_layer::ClipEncoderLayer;

/// Token ids the text encoder cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipInputError {
    #[error("token ids are empty (batch {batch}, length {len})")]
    Empty { batch: usize, len: usize },
    #[error("{got} tokens exceed the text encoder's {max} positions")]
    TooLong { got: usize, max: usize },
    #[error("token id {id} (sequence {row}, position {col}) is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: i64, row: usize, col: usize, vocab: usize },
    #[error("clip_skip {got} exceeds the text encoder's {layers} layers")]
    ClipSkip { got: usize, layers: usize },
}

/// The stack of encoder layers (`encoder.layers.k`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

/// What [`ClipTextTransformer::forward`] returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// `(B, L, D)`: the last layer's output after `final_layer_norm` (what SD conditions on).
    pub last_hidden_state: Tensor<3>,
    /// `(B, L, D)`: transformers' `hidden_states[-2]`, the input of the last layer (no final norm).
    pub penultimate: Tensor<3>,
    /// `(B, D)`: `last_hidden_state` at the end-of-text token of each sequence.
    pub pooled: Tensor<2>,
}

/// The CLIP text tower: embeddings, pre-LN causal transformer layers, final LayerNorm. Field
/// names are transformers' state-dict keys (without the `text_model.` prefix).
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
    pub vocab_size: usize,
    pub max_positions: usize,
    /// The config's `eos_token_id` (2: legacy, pool at the largest id).
    pub eos_token_id: usize,
}

impl ClipTextTransformer {
    /// A randomly initialised encoder of a validated `config` ([`ClipTextConfig::validate`]).
    pub fn new(config: &ClipTextConfig, device: &Device) -> Self {
        let c = config;
        Self {
            embeddings: ClipTextEmbeddings::new(c.vocab_size, c.max_position_embeddings, c.hidden_size, device),
            encoder: ClipEncoder {
                layers: (0..c.num_hidden_layers).map(|_| ClipEncoderLayer::new(&c.layer_shape(), device)).collect(),
            },
            final_layer_norm: LayerNormConfig::new(c.hidden_size).with_epsilon(c.layer_norm_eps).init(device),
            vocab_size: c.vocab_size,
            max_positions: c.max_position_embeddings,
            eos_token_id: c.eos_token_id,
        }
    }

    /// The longest token sequence the encoder accepts (77 for SD).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// `ids (B, L)` -> last hidden state, penultimate hidden state (both `(B, L, D)`) and the
    /// pooled `(B, D)` features, as transformers' `CLIPTextModel(ids, output_hidden_states=True)`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Result<ClipTextOutput, ClipInputError> {
        let host = self.check(&ids)?;
        let [batch, len] = ids.dims();
        let layers = self.encoder.layers.len();
        let penultimate = self.hidden_state(ids, layers - 1);
        let last = self.encoder.layers[layers - 1].forward(penultimate.clone());
        let last_hidden_state = self.final_layer_norm.forward(last);
        let positions: Vec<i64> =
            host.chunks(len).enumerate().map(|(row, ids)| (row * len + self.pooled_position(ids)) as i64).collect();
        let positions = Tensor::<1, Int>::from_data(TensorData::new(positions, [batch]), &last_hidden_state.device());
        let [_, _, dim] = last_hidden_state.dims();
        let pooled = last_hidden_state.clone().reshape([batch * len, dim]).select(0, positions);
        Ok(ClipTextOutput { last_hidden_state, penultimate, pooled })
    }

    /// The prompt embeddings diffusers' `encode_prompt` gives, `ids (B, L)` -> `(B, L, D)`:
    /// `clip_skip = 0` is `last_hidden_state`; `clip_skip = k > 0` is
    /// `final_layer_norm(hidden_states[-(k + 1)])`, the output of `k` layers before the last.
    pub fn embed(&self, ids: Tensor<2, Int>, clip_skip: usize) -> Result<Tensor<3>, ClipInputError> {
        let layers = self.encoder.layers.len();
        if clip_skip > layers {
            return Err(ClipInputError::ClipSkip { got: clip_skip, layers });
        }
        self.check(&ids)?;
        Ok(self.final_layer_norm.forward(self.hidden_state(ids, layers - clip_skip)))
    }

    /// The output of the embeddings followed by the first `layers` encoder layers.
    fn hidden_state(&self, ids: Tensor<2, Int>, layers: usize) -> Tensor<3> {
        self.encoder.layers[..layers].iter().fold(self.embeddings.forward(ids), |h, layer| layer.forward(h))
    }

    /// transformers' pooling rule on one sequence: the first position of the largest id under
    /// the legacy `eos_token_id = 2`, else the first position of `eos_token_id` (0 if none).
    fn pooled_position(&self, ids: &[i64]) -> usize {
        if self.eos_token_id == 2 {
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == max).unwrap_or(0)
        } else {
            ids.iter().position(|&id| id == self.eos_token_id as i64).unwrap_or(0)
        }
    }

    /// Checks the shape and the ids; returns the ids, row-major.
    fn check(&self, ids: &Tensor<2, Int>) -> Result<Vec<i64>, ClipInputError> {
        let [batch, len] = ids.dims();
        if batch == 0 || len == 0 {
            return Err(ClipInputError::Empty { batch, len });
        }
        if len > self.max_positions {
            return Err(ClipInputError::TooLong { got: len, max: self.max_positions });
        }
        let host: Vec<i64> = ids.to_data().iter::<i64>().collect();
        if let Some(i) = host.iter().position(|&id| id < 0 || id as u64 >= self.vocab_size as u64) {
            return Err(ClipInputError::TokenOutOfRange {
                id: host[i],
                row: i / len,
                col: i % len,
                vocab: self.vocab_size,
            });
        }
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ClipTextTransformer {
        let config = ClipTextConfig {
            vocab_size: 50,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            max_position_embeddings: 8,
            eos_token_id: 49,
            ..ClipTextConfig::vit_l14()
        };
        config.validate().expect("valid tiny config");
        ClipTextTransformer::new(&config, &Device::flex())
    }

    fn ids(rows: &[[i64; 6]]) -> Tensor<2, Int> {
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 6]), &Device::flex())
    }

    #[test]
    fn attention_is_causal_and_pooling_takes_the_first_eos() {
        let model = tiny();
        let a = model.forward(ids(&[[48, 3, 4, 49, 49, 49]])).unwrap();
        let b = model.forward(ids(&[[48, 3, 4, 49, 7, 9]])).unwrap();
        let head = |t: Tensor<3>| t.slice([0..1, 0..4]);
        let diff = (head(a.last_hidden_state.clone()) - head(b.last_hidden_state.clone())).abs().max();
        assert_eq!(diff.into_scalar::<f32>(), 0.0, "later tokens must not change earlier positions");
        let at_eos = a.last_hidden_state.clone().slice([0..1, 3..4]).reshape([1, 16]);
        assert_eq!((a.pooled - at_eos).abs().max().into_scalar::<f32>(), 0.0);
        let skip = model.embed(ids(&[[48, 3, 4, 49, 49, 49]]), 1).unwrap();
        let want = model.final_layer_norm.forward(a.penultimate);
        assert_eq!((skip - want).abs().max().into_scalar::<f32>(), 0.0);
    }

    #[test]
    fn bad_ids_are_errors() {
        let model = tiny();
        let too_long = Tensor::<2, Int>::zeros([1, 9], &Device::flex());
        assert_eq!(model.forward(too_long).unwrap_err(), ClipInputError::TooLong { got: 9, max: 8 });
        let err = model.forward(ids(&[[1, 2, 3, 4, 5, 6], [1, 2, 50, 4, 5, 6]])).unwrap_err();
        assert_eq!(err.to_string(), "token id 50 (sequence 1, position 2) is outside the vocabulary of 50 tokens");
        let err = model.embed(ids(&[[1, 2, 3, 4, 5, 6]]), 3).unwrap_err();
        assert_eq!(err, ClipInputError::ClipSkip { got: 3, layers: 2 });
        assert!(model.embed(ids(&[[1, 2, 3, 4, 5, 6]]), 2).is_ok(), "clip_skip = layers is the embeddings");
    }
}
