//! The UNet's down, mid and up blocks, with or without motion modules.
//!
//! One struct per position covers diffusers' four variants (`DownBlock2D`,
//! `CrossAttnDownBlock2D`, `DownBlockMotion`, `CrossAttnDownBlockMotion`, and likewise up/mid):
//! `attentions` and `motion_modules` are empty when the variant has none, so the module tree is
//! the checkpoint's key tree in every case.

use burn::prelude::*;

use super::motion::AnimateDiffTransformer3D;
use super::resnet::ResnetBlock2D;
use super::sampling::{Downsample2D, Upsample2D};
use super::transformer_2d::Transformer2DModel;

/// What every layer of every block is conditioned on.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Time embedding per folded frame, `(B*F, T)`.
    pub temb: Tensor<2>,
    /// Text per folded frame, `(B*F, L, D)`.
    pub text: Tensor<3>,
    /// Frames per clip (`F`); 1 for images.
    pub frames: usize,
}

/// One layer of a down or up block: resnet, then spatial attention, then motion module.
fn resnet_attention_motion(
    x: Tensor<4>,
    resnet: &ResnetBlock2D,
    attention: Option<&Transformer2DModel>,
    motion: Option<&AnimateDiffTransformer3D>,
    cond: &Conditioning,
) -> Tensor<4> {
    let mut x = resnet.forward(x, Some(&cond.temb));
    if let Some(attention) = attention {
        x = attention.forward(x, &cond.text);
    }
    if let Some(motion) = motion {
        x = motion.forward(x, cond.frames);
    }
    x
}

/// `resnets.j` -> `attentions.j`? -> `motion_modules.j`? per layer, then `downsamplers.0`?.
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub motion_modules: Vec<AnimateDiffTransformer3D>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    /// `x (B*F, Cin, H, W)` -> `(B*F, C, H', W')` and the skip tensors of every layer (and of
    /// the downsampler), in order.
    pub fn forward(&self, x: Tensor<4>, cond: &Conditioning) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        let mut x = x;
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet_attention_motion(x, resnet, self.attentions.get(j), self.motion_modules.get(j), cond);
            skips.push(x.clone());
        }
        if let Some(down) = self.downsamplers.first() {
            x = down.forward(x);
            skips.push(x.clone());
        }
        (x, skips)
    }
}

/// `resnets.0`, then per layer `attentions.j` -> `motion_modules.j`? -> `resnets.j+1`.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub motion_modules: Vec<AnimateDiffTransformer3D>,
}

impl MidBlock {
    /// `(B*F, C, H, W)` -> `(B*F, C, H, W)`.
    pub fn forward(&self, x: Tensor<4>, cond: &Conditioning) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(&cond.temb));
        for (j, resnet) in self.resnets.iter().skip(1).enumerate() {
            x = self.attentions[j].forward(x, &cond.text);
            if let Some(motion) = self.motion_modules.get(j) {
                x = motion.forward(x, cond.frames);
            }
            x = resnet.forward(x, Some(&cond.temb));
        }
        x
    }
}

/// Per layer: concat the last skip, `resnets.j` -> `attentions.j`? -> `motion_modules.j`?;
/// then `upsamplers.0`?.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub motion_modules: Vec<AnimateDiffTransformer3D>,
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    /// `x (B*F, C, H, W)`; pops one skip per layer from the end of `skips`, and upsamples to
    /// the size of the skip that the next block will pop first.
    pub fn forward(&self, x: Tensor<4>, skips: &mut Vec<Tensor<4>>, cond: &Conditioning) -> Tensor<4> {
        let mut x = x;
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip tensor per up-block layer");
            x = Tensor::cat(vec![x, skip], 1);
            x = resnet_attention_motion(x, resnet, self.attentions.get(j), self.motion_modules.get(j), cond);
        }
        if let Some(up) = self.upsamplers.first() {
            let size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = up.forward(x, size);
        }
        x
    }
}
