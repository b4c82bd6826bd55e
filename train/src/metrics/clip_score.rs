//! CLIPScore in torchmetrics' convention: `max(100 cos(E_image, E_prompt), 0)` per frame, the
//! mean over a video's frames, then over videos. Frames are 8-bit RGB as a saved video holds
//! them, prepared as transformers' CLIP image processor (PIL backend) prepares them: the short
//! side resized (Pillow's bicubic) to `size`, a centre crop, `x / 255`, then mean and std.

use avdm_import::ClipTokenizer;
use avdm_model::clip::{ClipImageProcessorConfig, ClipModel};
use burn::prelude::*;

use super::pil_resize::{Rgb8, resize_bicubic};
use crate::error::TrainError;
use crate::teacher::caption_ids;

/// An image as CLIP's vision tower takes it: `(3, crop height, crop width)` values, normalised.
pub fn clip_pixels(image: &Rgb8, config: &ClipImageProcessorConfig) -> Result<Vec<f32>, TrainError> {
    let mut image = image.clone();
    if config.do_resize {
        let (short, long) = (image.height.min(image.width), image.height.max(image.width));
        let target = config.short_side();
        // transformers: int(size * long / short).
        let new_long = ((target * long) as f64 / short as f64) as usize;
        let (h, w) = if image.height <= image.width { (target, new_long) } else { (new_long, target) };
        image = resize_bicubic(&image, h, w);
    }
    let [ch, cw] = if config.do_center_crop { config.crop() } else { [image.height, image.width] };
    if ch > image.height || cw > image.width {
        let message = format!("a {}x{} image is smaller than the {ch}x{cw} crop", image.height, image.width);
        return Err(TrainError::setting("clip image", message));
    }
    let (top, left) = ((image.height - ch) / 2, (image.width - cw) / 2);
    let mut out = Vec::with_capacity(3 * ch * cw);
    for c in 0..3 {
        for y in top..top + ch {
            for x in left..left + cw {
                let mut v = image.data[(y * image.width + x) * 3 + c] as f64;
                if config.do_rescale {
                    v *= config.rescale_factor;
                }
                if config.do_normalize {
                    v = (v - config.image_mean[c]) / config.image_std[c];
                }
                out.push(v as f32);
            }
        }
    }
    Ok(out)
}

/// A CLIP model with its tokenizer and image settings, scoring frames against prompts.
pub struct ClipScorer {
    pub model: ClipModel,
    pub tokenizer: ClipTokenizer,
    pub image: ClipImageProcessorConfig,
}

/// Rows divided by their L2 norm.
fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt();
    x / norm
}

impl ClipScorer {
    /// Unit-length projected text embeddings `(P, E)` of `prompts`.
    pub fn prompt_embeddings(&self, prompts: &[String], device: &Device) -> Result<Tensor<2>, TrainError> {
        let ids = caption_ids(&self.tokenizer, prompts, device)?;
        Ok(unit_rows(self.model.text_features(ids)?))
    }

    /// Unit-length projected image embeddings `(N, E)` of `images`.
    pub fn image_embeddings(&self, images: &[Rgb8], device: &Device) -> Result<Tensor<2>, TrainError> {
        let [ch, cw] = self.image.crop();
        let mut values = Vec::with_capacity(images.len() * 3 * ch * cw);
        for image in images {
            values.extend(clip_pixels(image, &self.image)?);
        }
        let pixels = Tensor::<1>::from_floats(values.as_slice(), device).reshape([images.len(), 3, ch, cw]);
        Ok(unit_rows(self.model.image_features(pixels)))
    }

    /// Per frame, `max(100 cos, 0)` against the prompt's unit embedding `(1, E)` or `(E)`.
    pub fn frame_scores(&self, frames: &[Rgb8], prompt: Tensor<2>, device: &Device) -> Result<Vec<f64>, TrainError> {
        let images = self.image_embeddings(frames, device)?;
        let cos = images.matmul(prompt.transpose()).reshape([frames.len()]);
        let values: Vec<f32> = cos.into_data().convert::<f32>().iter::<f32>().collect();
        Ok(values.into_iter().map(|c| (100.0 * c as f64).max(0.0)).collect())
    }

    /// A video's CLIPScore: the mean over its frames of [`ClipScorer::frame_scores`].
    pub fn video_score(&self, frames: &[Rgb8], prompt: Tensor<2>, device: &Device) -> Result<f64, TrainError> {
        let scores = self.frame_scores(frames, prompt, device)?;
        Ok(scores.iter().sum::<f64>() / scores.len().max(1) as f64)
    }
}
