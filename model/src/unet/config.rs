//! UNet configurations: diffusers' `config.json` formats in, one resolved [`UNetConfig`] out.
//!
//! Three diffusers files describe the networks we build:
//! - [`UNet2DConditionConfig`]: `unet/config.json` of an SD1.5-family pipeline (the 2D UNet);
//! - [`MotionAdapterConfig`]: `config.json` of an AnimateDiff `MotionAdapter`;
//! - [`UNetMotionConfig`]: `config.json` of a saved `UNetMotionModel` (UNet + adapter).
//!
//! Each converts into [`UNetConfig`], the resolved per-block description the model is built
//! from, following diffusers' own rules (`UNetMotionModel.__init__` and `from_unet2d`).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A config value that is either one number for every block or one number per block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    Same(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    /// Expands to one value per block, checking the length of an explicit list.
    fn expand(&self, field: &str, blocks: usize) -> Result<Vec<usize>, ConfigError> {
        match self {
            PerBlock::Same(v) => Ok(vec![*v; blocks]),
            PerBlock::Each(v) if v.len() == blocks => Ok(v.clone()),
            PerBlock::Each(v) => {
                Err(ConfigError::invalid(field, format!("has {} entries but the UNet has {blocks} blocks", v.len())))
            }
        }
    }
}

/// The fields diffusers' `UNet2DConditionModel` and `UNetMotionModel` configs share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetCommonConfig {
    /// Latent pixels a pipeline generates by default (64 for SD1.5); not part of the network.
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default = "default_latent_channels")]
    pub in_channels: usize,
    #[serde(default = "default_latent_channels")]
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: PerBlock,
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    #[serde(default = "default_one_f64")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "default_act_fn")]
    pub act_fn: String,
    #[serde(default = "default_norm_num_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_cross_attention_dim")]
    pub cross_attention_dim: usize,
    #[serde(default = "default_per_block_one")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub encoder_hid_dim_type: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
}

/// diffusers `UNet2DConditionModel` config (`unet/config.json`); only the fields that change
/// the SD1.5-family network are read, unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNet2DConditionConfig {
    #[serde(flatten)]
    pub common: UNetCommonConfig,
    #[serde(default = "default_mid_block_type")]
    pub mid_block_type: Option<String>,
    /// SD1.5 quirk: when `num_attention_heads` is absent this is the number of *heads*.
    #[serde(default = "default_attention_head_dim")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub only_cross_attention: bool,
    /// Softmax in f32 under half precision; our attention already accumulates in f32, so it
    /// changes nothing in the network we build.
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default = "default_resnet_time_scale_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default = "default_time_embedding_type")]
    pub time_embedding_type: String,
}

/// diffusers `MotionAdapter` config (`config.json` of a motion-adapter folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionAdapterConfig {
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub motion_layers_per_block: PerBlock,
    #[serde(default = "default_per_block_one")]
    pub motion_transformer_layers_per_block: PerBlock,
    #[serde(default = "default_one")]
    pub motion_mid_block_layers_per_block: usize,
    #[serde(default = "default_one")]
    pub motion_transformer_layers_per_mid_block: usize,
    #[serde(default = "default_motion_heads")]
    pub motion_num_attention_heads: PerBlock,
    /// Used by a standalone `MotionAdapter` only: inside `UNetMotionModel` (what we build)
    /// diffusers gives the motion GroupNorms the UNet's `norm_num_groups`.
    #[serde(default = "default_norm_num_groups")]
    pub motion_norm_num_groups: usize,
    #[serde(default = "default_max_seq_length")]
    pub motion_max_seq_length: usize,
    #[serde(default = "default_true")]
    pub use_motion_mid_block: bool,
    #[serde(default)]
    pub conv_in_channels: Option<usize>,
}

/// diffusers `UNetMotionModel` config (`config.json` of a combined UNet + motion folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetMotionConfig {
    #[serde(flatten)]
    pub common: UNetCommonConfig,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<PerBlock>,
    #[serde(default = "default_per_block_one")]
    pub temporal_transformer_layers_per_block: PerBlock,
    #[serde(default)]
    pub reverse_temporal_transformer_layers_per_block: Option<PerBlock>,
    #[serde(default)]
    pub transformer_layers_per_mid_block: Option<usize>,
    #[serde(default = "default_some_one")]
    pub temporal_transformer_layers_per_mid_block: Option<usize>,
    #[serde(default = "default_motion_heads")]
    pub num_attention_heads: PerBlock,
    #[serde(default = "default_max_seq_length")]
    pub motion_max_seq_length: usize,
    #[serde(default = "default_motion_heads")]
    pub motion_num_attention_heads: PerBlock,
    #[serde(default)]
    pub reverse_motion_num_attention_heads: Option<PerBlock>,
    #[serde(default = "default_true")]
    pub use_motion_mid_block: bool,
    #[serde(default = "default_one")]
    pub mid_block_layers: usize,
}

/// The resolved description of a (video) UNet: everything per block, nothing left implicit.
/// Without `motion` it is diffusers' `UNet2DConditionModel`; with it, `UNetMotionModel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Latent pixels a pipeline generates by default (diffusers' `sample_size`); not part of
    /// the network.
    #[serde(default)]
    pub sample_size: Option<usize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    /// Per down block: whether it has spatial (cross-attention) transformers.
    pub down_cross_attention: Vec<bool>,
    /// Per up block, in up order (deepest first).
    pub up_cross_attention: Vec<bool>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: Vec<usize>,
    /// Spatial transformer depth per down block.
    pub transformer_layers_per_block: Vec<usize>,
    /// Spatial transformer depth per up block, in up order.
    pub reverse_transformer_layers_per_block: Vec<usize>,
    pub transformer_layers_per_mid_block: usize,
    /// Attention + resnet pairs after the first mid-block resnet.
    pub mid_block_layers: usize,
    /// Spatial attention heads per down block (head dim = channels / heads).
    pub num_attention_heads: Vec<usize>,
    pub cross_attention_dim: usize,
    /// `proj_in`/`proj_out` of the spatial transformers are Linear (true) or 1x1 Conv2d (false).
    pub use_linear_projection: bool,
    pub norm_num_groups: usize,
    /// GroupNorm eps of the resnets and of `conv_norm_out`.
    pub norm_eps: f64,
    pub downsample_padding: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub motion: Option<MotionConfig>,
}

/// The motion-module part of a [`UNetConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionConfig {
    /// Temporal attention heads per down block.
    pub num_attention_heads: Vec<usize>,
    /// Temporal attention heads per up block, in up order.
    pub reverse_num_attention_heads: Vec<usize>,
    /// Temporal transformer depth per down block.
    pub transformer_layers_per_block: Vec<usize>,
    /// Temporal transformer depth per up block, in up order.
    pub reverse_transformer_layers_per_block: Vec<usize>,
    /// Temporal transformer depth in the mid block.
    pub transformer_layers_per_mid_block: usize,
    /// Whether the mid block has motion modules (AnimateDiff v2 adapters).
    pub mid_block: bool,
    /// Number of sinusoidal frame positions: the most frames the model accepts.
    pub max_seq_length: usize,
    /// `false` (diffusers): the motion GroupNorm takes statistics over all frames of the clip.
    /// `true` (original AnimateDiff code): statistics per frame.
    #[serde(default)]
    pub norm_per_frame: bool,
}

pub(crate) fn default_latent_channels() -> usize {
    4
}
fn default_mid_block_type() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn default_layers_per_block() -> PerBlock {
    PerBlock::Same(2)
}
fn default_per_block_one() -> PerBlock {
    PerBlock::Same(1)
}
fn default_one() -> usize {
    1
}
fn default_some_one() -> Option<usize> {
    Some(1)
}
fn default_one_f64() -> f64 {
    1.0
}
pub(crate) fn default_act_fn() -> String {
    "silu".into()
}
pub(crate) fn default_norm_num_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_cross_attention_dim() -> usize {
    1280
}
fn default_attention_head_dim() -> PerBlock {
    PerBlock::Same(8)
}
fn default_motion_heads() -> PerBlock {
    PerBlock::Same(8)
}
fn default_max_seq_length() -> usize {
    32
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_resnet_time_scale_shift() -> String {
    "default".into()
}
fn default_time_embedding_type() -> String {
    "positional".into()
}

/// Reads `cross_attention` flags from block type names, checking each against the allowed
/// plain and cross-attention names.
fn block_kinds(field: &str, types: &[String], cross: &[&str], plain: &[&str]) -> Result<Vec<bool>, ConfigError> {
    types
        .iter()
        .map(|t| {
            if cross.contains(&t.as_str()) {
                Ok(true)
            } else if plain.contains(&t.as_str()) {
                Ok(false)
            } else {
                Err(ConfigError::invalid(
                    field,
                    format!("unknown block type `{t}` (expected one of {cross:?} or {plain:?})"),
                ))
            }
        })
        .collect()
}

fn reversed(v: &[usize]) -> Vec<usize> {
    v.iter().rev().copied().collect()
}

pub(crate) fn require(ok: bool, field: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(ConfigError::invalid(field, message)) }
}

/// The shortest diffusers spelling of a per-block list: one number when all blocks agree.
fn compact(v: &[usize]) -> PerBlock {
    match v {
        [first, rest @ ..] if rest.iter().all(|x| x == first) => PerBlock::Same(*first),
        _ => PerBlock::Each(v.to_vec()),
    }
}

/// An up-order list as diffusers' optional `reverse_*` field: `None` when it is the down-order
/// list reversed (what diffusers assumes when the field is absent).
fn unless_reversed(up: &[usize], down: &[usize]) -> Option<PerBlock> {
    (up != reversed(down).as_slice()).then(|| PerBlock::Each(up.to_vec()))
}

/// Block type names of a format from per-block cross-attention flags.
fn block_names(cross_attention: &[bool], [cross, plain]: [&str; 2]) -> Vec<String> {
    cross_attention.iter().map(|&c| if c { cross } else { plain }.to_string()).collect()
}

impl UNet2DConditionConfig {
    /// Parses diffusers' `unet/config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "UNet2DConditionModel", source })
    }

    /// The SD1.5 UNet (runwayml/stable-diffusion-v1-5 `unet/config.json`).
    pub fn sd15() -> Self {
        let s = |v: &str| v.to_string();
        Self {
            common: UNetCommonConfig {
                sample_size: Some(64),
                in_channels: 4,
                out_channels: 4,
                down_block_types: vec![
                    s("CrossAttnDownBlock2D"),
                    s("CrossAttnDownBlock2D"),
                    s("CrossAttnDownBlock2D"),
                    s("DownBlock2D"),
                ],
                up_block_types: vec![
                    s("UpBlock2D"),
                    s("CrossAttnUpBlock2D"),
                    s("CrossAttnUpBlock2D"),
                    s("CrossAttnUpBlock2D"),
                ],
                block_out_channels: vec![320, 640, 1280, 1280],
                layers_per_block: PerBlock::Same(2),
                downsample_padding: 1,
                mid_block_scale_factor: 1.0,
                act_fn: "silu".into(),
                norm_num_groups: 32,
                norm_eps: 1e-5,
                cross_attention_dim: 768,
                transformer_layers_per_block: PerBlock::Same(1),
                use_linear_projection: false,
                addition_embed_type: None,
                encoder_hid_dim_type: None,
                time_cond_proj_dim: None,
            },
            mid_block_type: default_mid_block_type(),
            attention_head_dim: PerBlock::Same(8),
            num_attention_heads: None,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            only_cross_attention: false,
            upcast_attention: false,
            resnet_time_scale_shift: "default".into(),
            class_embed_type: None,
            time_embedding_type: "positional".into(),
        }
    }
}

impl MotionAdapterConfig {
    /// Parses a motion adapter's `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "MotionAdapter", source })
    }

    /// `guoyww/animatediff-motion-adapter-v1-5-2` (`mm_sd_v15_v2.ckpt`): mid block, 32 positions.
    pub fn v1_5_2() -> Self {
        Self {
            block_out_channels: vec![320, 640, 1280, 1280],
            motion_layers_per_block: PerBlock::Same(2),
            motion_transformer_layers_per_block: PerBlock::Same(1),
            motion_mid_block_layers_per_block: 1,
            motion_transformer_layers_per_mid_block: 1,
            motion_num_attention_heads: PerBlock::Same(8),
            motion_norm_num_groups: 32,
            motion_max_seq_length: 32,
            use_motion_mid_block: true,
            conv_in_channels: None,
        }
    }

    /// `guoyww/animatediff-motion-adapter-v1-5` (`mm_sd_v15.ckpt`): no mid block, 24 positions.
    pub fn v1_5() -> Self {
        Self { motion_max_seq_length: 24, use_motion_mid_block: false, ..Self::v1_5_2() }
    }
}

impl UNetMotionConfig {
    /// Parses a `UNetMotionModel` `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "UNetMotionModel", source })
    }
}

impl UNetCommonConfig {
    /// Rejects what avdm does not build and resolves the shared fields into a 2D
    /// [`UNetConfig`]; `down`/`up` are the (cross-attention, plain) block type names of the
    /// format, `heads` its spatial attention heads.
    fn resolve(&self, down: [&str; 2], up: [&str; 2], heads: &PerBlock) -> Result<UNetConfig, ConfigError> {
        let n = self.block_out_channels.len();
        require(n > 0, "block_out_channels", "is empty")?;
        require(
            self.act_fn == "silu" || self.act_fn == "swish",
            "act_fn",
            format!("`{}` is not supported (silu only)", self.act_fn),
        )?;
        require(self.addition_embed_type.is_none(), "addition_embed_type", "additional embeddings are not supported")?;
        require(self.encoder_hid_dim_type.is_none(), "encoder_hid_dim_type", "is not supported")?;
        require(self.time_cond_proj_dim.is_none(), "time_cond_proj_dim", "is not supported")?;
        require(self.mid_block_scale_factor == 1.0, "mid_block_scale_factor", "only 1.0 is supported")?;
        let transformer_layers = self.transformer_layers_per_block.expand("transformer_layers_per_block", n)?;
        Ok(UNetConfig {
            sample_size: self.sample_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            block_out_channels: self.block_out_channels.clone(),
            down_cross_attention: block_kinds("down_block_types", &self.down_block_types, &[down[0]], &[down[1]])?,
            up_cross_attention: block_kinds("up_block_types", &self.up_block_types, &[up[0]], &[up[1]])?,
            layers_per_block: self.layers_per_block.expand("layers_per_block", n)?,
            transformer_layers_per_mid_block: *transformer_layers.last().unwrap_or(&1),
            reverse_transformer_layers_per_block: reversed(&transformer_layers),
            transformer_layers_per_block: transformer_layers,
            mid_block_layers: 1,
            num_attention_heads: heads.expand("num_attention_heads", n)?,
            cross_attention_dim: self.cross_attention_dim,
            use_linear_projection: self.use_linear_projection,
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            downsample_padding: self.downsample_padding,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            motion: None,
        })
    }
}

impl UNetConfig {
    /// The 2D UNet of a diffusers `unet/config.json`.
    pub fn from_unet_2d(c: &UNet2DConditionConfig) -> Result<Self, ConfigError> {
        require(c.resnet_time_scale_shift == "default", "resnet_time_scale_shift", "only `default` is supported")?;
        require(c.time_embedding_type == "positional", "time_embedding_type", "only `positional` is supported")?;
        require(!c.only_cross_attention, "only_cross_attention", "is not supported")?;
        require(c.class_embed_type.is_none(), "class_embed_type", "class embeddings are not supported")?;
        require(
            c.mid_block_type.as_deref() == Some("UNetMidBlock2DCrossAttn"),
            "mid_block_type",
            format!("{:?} is not supported (UNetMidBlock2DCrossAttn only)", c.mid_block_type),
        )?;
        let heads = c.num_attention_heads.as_ref().unwrap_or(&c.attention_head_dim);
        let mut config =
            c.common.resolve(["CrossAttnDownBlock2D", "DownBlock2D"], ["CrossAttnUpBlock2D", "UpBlock2D"], heads)?;
        config.flip_sin_to_cos = c.flip_sin_to_cos;
        config.freq_shift = c.freq_shift;
        config.validate()?;
        Ok(config)
    }

    /// Adds a motion adapter to a 2D UNet, as diffusers' `UNetMotionModel.from_unet2d` does.
    pub fn with_motion_adapter(mut self, a: &MotionAdapterConfig) -> Result<Self, ConfigError> {
        let n = self.block_out_channels.len();
        require(
            a.block_out_channels == self.block_out_channels,
            "block_out_channels",
            format!("motion adapter has {:?} but the UNet has {:?}", a.block_out_channels, self.block_out_channels),
        )?;
        let layers = a.motion_layers_per_block.expand("motion_layers_per_block", n)?;
        require(
            layers == self.layers_per_block,
            "motion_layers_per_block",
            format!("motion adapter has {layers:?} layers per block but the UNet has {:?}", self.layers_per_block),
        )?;
        require(
            a.motion_mid_block_layers_per_block == self.mid_block_layers,
            "motion_mid_block_layers_per_block",
            "must equal the UNet's mid-block layers (1)",
        )?;
        if let Some(c) = a.conv_in_channels {
            self.in_channels = c;
        }
        let heads = a.motion_num_attention_heads.expand("motion_num_attention_heads", n)?;
        let depth = a.motion_transformer_layers_per_block.expand("motion_transformer_layers_per_block", n)?;
        self.motion = Some(MotionConfig {
            reverse_num_attention_heads: reversed(&heads),
            num_attention_heads: heads,
            reverse_transformer_layers_per_block: reversed(&depth),
            transformer_layers_per_block: depth,
            transformer_layers_per_mid_block: a.motion_transformer_layers_per_mid_block,
            mid_block: a.use_motion_mid_block,
            max_seq_length: a.motion_max_seq_length,
            norm_per_frame: false,
        });
        self.validate()?;
        Ok(self)
    }

    /// The network of a diffusers `UNetMotionModel` `config.json`.
    pub fn from_unet_motion(c: &UNetMotionConfig) -> Result<Self, ConfigError> {
        let n = c.common.block_out_channels.len();
        let mut config = c.common.resolve(
            ["CrossAttnDownBlockMotion", "DownBlockMotion"],
            ["CrossAttnUpBlockMotion", "UpBlockMotion"],
            &c.num_attention_heads,
        )?;
        if let Some(r) = &c.reverse_transformer_layers_per_block {
            config.reverse_transformer_layers_per_block = r.expand("reverse_transformer_layers_per_block", n)?;
        }
        if let Some(mid) = c.transformer_layers_per_mid_block {
            config.transformer_layers_per_mid_block = mid;
        }
        config.mid_block_layers = c.mid_block_layers;
        let temporal_layers =
            c.temporal_transformer_layers_per_block.expand("temporal_transformer_layers_per_block", n)?;
        let reverse_temporal_layers = match &c.reverse_temporal_transformer_layers_per_block {
            Some(r) => r.expand("reverse_temporal_transformer_layers_per_block", n)?,
            None => reversed(&temporal_layers),
        };
        let motion_heads = c.motion_num_attention_heads.expand("motion_num_attention_heads", n)?;
        let reverse_motion_heads = match &c.reverse_motion_num_attention_heads {
            Some(r) => r.expand("reverse_motion_num_attention_heads", n)?,
            None => reversed(&motion_heads),
        };
        config.motion = Some(MotionConfig {
            num_attention_heads: motion_heads,
            reverse_num_attention_heads: reverse_motion_heads,
            transformer_layers_per_block: temporal_layers,
            reverse_transformer_layers_per_block: reverse_temporal_layers,
            transformer_layers_per_mid_block: c.temporal_transformer_layers_per_mid_block.unwrap_or(1),
            mid_block: c.use_motion_mid_block,
            max_seq_length: c.motion_max_seq_length,
            norm_per_frame: false,
        });
        config.validate()?;
        Ok(config)
    }

    /// The motion modules, checked to be expressible in diffusers' formats (which always
    /// normalise the motion GroupNorm over the whole clip).
    fn diffusers_motion(&self) -> Result<&MotionConfig, ConfigError> {
        self.validate()?;
        let m = self.motion.as_ref().ok_or_else(|| ConfigError::invalid("motion", "the UNet has no motion modules"))?;
        require(
            !m.norm_per_frame,
            "norm_per_frame",
            "diffusers' motion modules normalise over all frames; per-frame statistics cannot be exported",
        )?;
        Ok(m)
    }

    /// The diffusers `MotionAdapter` config of the motion modules: the inverse of
    /// [`UNetConfig::with_motion_adapter`]. The adapter holds no `conv_in`
    /// (`conv_in_channels: null`): input channels stay a property of the UNet.
    pub fn to_motion_adapter_config(&self) -> Result<MotionAdapterConfig, ConfigError> {
        let m = self.diffusers_motion()?;
        require(
            m.reverse_num_attention_heads == reversed(&m.num_attention_heads),
            "reverse_motion_num_attention_heads",
            "a MotionAdapter's up blocks mirror the down blocks' heads; export the full UNetMotionModel instead",
        )?;
        require(
            m.reverse_transformer_layers_per_block == reversed(&m.transformer_layers_per_block),
            "reverse_temporal_transformer_layers_per_block",
            "a MotionAdapter's up blocks mirror the down blocks' depths; export the full UNetMotionModel instead",
        )?;
        Ok(MotionAdapterConfig {
            block_out_channels: self.block_out_channels.clone(),
            motion_layers_per_block: compact(&self.layers_per_block),
            motion_transformer_layers_per_block: compact(&m.transformer_layers_per_block),
            motion_mid_block_layers_per_block: self.mid_block_layers,
            motion_transformer_layers_per_mid_block: m.transformer_layers_per_mid_block,
            motion_num_attention_heads: compact(&m.num_attention_heads),
            // Inside UNetMotionModel the motion GroupNorms use the UNet's groups.
            motion_norm_num_groups: self.norm_num_groups,
            motion_max_seq_length: m.max_seq_length,
            use_motion_mid_block: m.mid_block,
            conv_in_channels: None,
        })
    }

    /// The diffusers `UNetMotionModel` config of this network: the inverse of
    /// [`UNetConfig::from_unet_motion`]. Lists are written as one number when all blocks
    /// agree, and `reverse_*` / `transformer_layers_per_mid_block` only when they differ from
    /// what diffusers derives without them.
    pub fn to_unet_motion_config(&self) -> Result<UNetMotionConfig, ConfigError> {
        let m = self.diffusers_motion()?;
        require(self.flip_sin_to_cos, "flip_sin_to_cos", "UNetMotionModel's time projection always flips (true)")?;
        require(self.freq_shift == 0.0, "freq_shift", "UNetMotionModel's time projection has no frequency shift (0)")?;
        let layers = &self.transformer_layers_per_block;
        let default_mid = *layers.last().unwrap_or(&1);
        Ok(UNetMotionConfig {
            common: self
                .common(["CrossAttnDownBlockMotion", "DownBlockMotion"], ["CrossAttnUpBlockMotion", "UpBlockMotion"]),
            reverse_transformer_layers_per_block: unless_reversed(&self.reverse_transformer_layers_per_block, layers),
            temporal_transformer_layers_per_block: compact(&m.transformer_layers_per_block),
            reverse_temporal_transformer_layers_per_block: unless_reversed(
                &m.reverse_transformer_layers_per_block,
                &m.transformer_layers_per_block,
            ),
            transformer_layers_per_mid_block: (self.transformer_layers_per_mid_block != default_mid)
                .then_some(self.transformer_layers_per_mid_block),
            temporal_transformer_layers_per_mid_block: Some(m.transformer_layers_per_mid_block),
            num_attention_heads: compact(&self.num_attention_heads),
            motion_max_seq_length: m.max_seq_length,
            motion_num_attention_heads: compact(&m.num_attention_heads),
            reverse_motion_num_attention_heads: unless_reversed(&m.reverse_num_attention_heads, &m.num_attention_heads),
            use_motion_mid_block: m.mid_block,
            mid_block_layers: self.mid_block_layers,
        })
    }

    /// The diffusers `UNet2DConditionModel` config of the 2D part (the image model of a video
    /// UNet): the inverse of [`UNetConfig::from_unet_2d`]. A 2D UNet's up blocks mirror its
    /// down blocks and its mid block has one attention + resnet pair at the last down block's
    /// depth; other layouts cannot be written.
    pub fn to_unet_2d_config(&self) -> Result<UNet2DConditionConfig, ConfigError> {
        self.validate()?;
        let layers = &self.transformer_layers_per_block;
        require(
            self.reverse_transformer_layers_per_block == reversed(layers),
            "reverse_transformer_layers_per_block",
            "a UNet2DConditionModel's up blocks mirror its down blocks",
        )?;
        require(
            self.transformer_layers_per_mid_block == *layers.last().unwrap_or(&1) && self.mid_block_layers == 1,
            "transformer_layers_per_mid_block",
            "a UNet2DConditionModel's mid block has one attention + resnet pair at the last down block's depth",
        )?;
        Ok(UNet2DConditionConfig {
            common: self.common(["CrossAttnDownBlock2D", "DownBlock2D"], ["CrossAttnUpBlock2D", "UpBlock2D"]),
            mid_block_type: default_mid_block_type(),
            // diffusers refuses `num_attention_heads` here; `attention_head_dim` holds the
            // number of heads (SD1.5's naming).
            attention_head_dim: compact(&self.num_attention_heads),
            num_attention_heads: None,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            only_cross_attention: false,
            upcast_attention: false,
            resnet_time_scale_shift: default_resnet_time_scale_shift(),
            class_embed_type: None,
            time_embedding_type: default_time_embedding_type(),
        })
    }

    /// The fields both diffusers formats share, with the format's block type names
    /// (`[cross-attention, plain]`).
    fn common(&self, down: [&str; 2], up: [&str; 2]) -> UNetCommonConfig {
        UNetCommonConfig {
            sample_size: self.sample_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            down_block_types: block_names(&self.down_cross_attention, down),
            up_block_types: block_names(&self.up_cross_attention, up),
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: compact(&self.layers_per_block),
            downsample_padding: self.downsample_padding,
            mid_block_scale_factor: 1.0,
            act_fn: default_act_fn(),
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            cross_attention_dim: self.cross_attention_dim,
            transformer_layers_per_block: compact(&self.transformer_layers_per_block),
            use_linear_projection: self.use_linear_projection,
            addition_embed_type: None,
            encoder_hid_dim_type: None,
            time_cond_proj_dim: None,
        }
    }

    /// The SD1.5 image UNet (the 2D teacher).
    pub fn sd15() -> Self {
        Self::from_unet_2d(&UNet2DConditionConfig::sd15()).expect("the SD1.5 config is valid")
    }

    /// SD1.5 + AnimateDiff motion adapter v1-5-2 (the video teacher).
    pub fn sd15_motion_v1_5_2() -> Self {
        Self::sd15().with_motion_adapter(&MotionAdapterConfig::v1_5_2()).expect("the v1-5-2 config is valid")
    }

    /// SD1.5 + AnimateDiff motion adapter v1-5 (no motion mid block, 24 frames).
    pub fn sd15_motion_v1_5() -> Self {
        Self::sd15().with_motion_adapter(&MotionAdapterConfig::v1_5()).expect("the v1-5 config is valid")
    }

    /// The same network without motion modules: the 2D UNet the motion UNet was built on.
    pub fn without_motion(&self) -> Self {
        Self { motion: None, ..self.clone() }
    }

    /// The most frames a forward accepts (1 for a 2D UNet).
    pub fn max_frames(&self) -> usize {
        self.motion.as_ref().map_or(1, |m| m.max_seq_length)
    }

    /// Checks that every per-block list fits the block layout and every split divides evenly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.block_out_channels.len();
        let lists: [(&str, usize); 6] = [
            ("down_block_types", self.down_cross_attention.len()),
            ("up_block_types", self.up_cross_attention.len()),
            ("layers_per_block", self.layers_per_block.len()),
            ("transformer_layers_per_block", self.transformer_layers_per_block.len()),
            ("reverse_transformer_layers_per_block", self.reverse_transformer_layers_per_block.len()),
            ("num_attention_heads", self.num_attention_heads.len()),
        ];
        for (field, len) in lists {
            require(len == n, field, format!("has {len} entries but block_out_channels has {n}"))?;
        }
        require(self.in_channels > 0 && self.out_channels > 0, "in_channels", "channels must be positive")?;
        require(self.layers_per_block.iter().all(|&l| l > 0), "layers_per_block", "every block needs a layer")?;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            require(
                c > 0 && c % self.norm_num_groups == 0,
                "norm_num_groups",
                format!("{} does not divide block {i}'s {c} channels", self.norm_num_groups),
            )?;
            let heads = self.num_attention_heads[i];
            require(
                heads > 0 && c % heads == 0,
                "num_attention_heads",
                format!("{heads} heads do not divide block {i}'s {c} channels"),
            )?;
        }
        let up_heads = reversed(&self.num_attention_heads);
        for (i, &c) in self.block_out_channels.iter().rev().enumerate() {
            require(
                c % up_heads[i] == 0,
                "num_attention_heads",
                format!("{} heads do not divide up block {i}'s {c} channels", up_heads[i]),
            )?;
        }
        if let Some(m) = &self.motion {
            let lists: [(&str, usize); 4] = [
                ("motion_num_attention_heads", m.num_attention_heads.len()),
                ("reverse_motion_num_attention_heads", m.reverse_num_attention_heads.len()),
                ("temporal_transformer_layers_per_block", m.transformer_layers_per_block.len()),
                ("reverse_temporal_transformer_layers_per_block", m.reverse_transformer_layers_per_block.len()),
            ];
            for (field, len) in lists {
                require(len == n, field, format!("has {len} entries but block_out_channels has {n}"))?;
            }
            require(m.max_seq_length > 0, "motion_max_seq_length", "must be positive")?;
            for (i, &c) in self.block_out_channels.iter().enumerate() {
                let h = m.num_attention_heads[i];
                require(
                    h > 0 && c % h == 0,
                    "motion_num_attention_heads",
                    format!("{h} heads do not divide block {i}'s {c} channels"),
                )?;
                require(c % 2 == 0, "block_out_channels", "motion modules need an even channel count")?;
            }
            for (i, &c) in self.block_out_channels.iter().rev().enumerate() {
                let h = m.reverse_num_attention_heads[i];
                require(
                    h > 0 && c % h == 0,
                    "reverse_motion_num_attention_heads",
                    format!("{h} heads do not divide up block {i}'s {c} channels"),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both diffusers configs of `c` convert back to `c`.
    fn assert_round_trips(c: &UNetConfig) {
        let full = c.to_unet_motion_config().expect("UNetMotionModel config");
        assert_eq!(&UNetConfig::from_unet_motion(&full).expect("valid"), c);
        let adapter = c.to_motion_adapter_config().expect("MotionAdapter config");
        assert_eq!(&c.without_motion().with_motion_adapter(&adapter).expect("fits"), c);
    }

    #[test]
    fn sd15_motion_configs_round_trip() {
        for c in [UNetConfig::sd15_motion_v1_5_2(), UNetConfig::sd15_motion_v1_5()] {
            assert_round_trips(&c);
        }
        let adapter = UNetConfig::sd15_motion_v1_5_2().to_motion_adapter_config().unwrap();
        assert_eq!(adapter, MotionAdapterConfig::v1_5_2());
        assert_eq!(UNetConfig::sd15_motion_v1_5().to_motion_adapter_config().unwrap(), MotionAdapterConfig::v1_5());
        let full = UNetConfig::sd15_motion_v1_5_2().to_unet_motion_config().unwrap();
        assert_eq!(full.common.layers_per_block, PerBlock::Same(2));
        assert_eq!(full.num_attention_heads, PerBlock::Same(8));
        assert_eq!(full.reverse_motion_num_attention_heads, None);
        assert_eq!(full.transformer_layers_per_mid_block, None);
    }

    #[test]
    fn the_image_model_writes_as_sd15_s_unet_2d_config() {
        let image = UNetConfig::sd15_motion_v1_5_2().to_unet_2d_config().unwrap();
        assert_eq!(image, UNet2DConditionConfig { num_attention_heads: None, ..UNet2DConditionConfig::sd15() });
        assert_eq!(UNetConfig::from_unet_2d(&image).unwrap(), UNetConfig::sd15());
        let deeper_mid = UNetConfig { transformer_layers_per_mid_block: 2, ..UNetConfig::sd15() };
        let err = deeper_mid.to_unet_2d_config().unwrap_err().to_string();
        assert!(err.contains("transformer_layers_per_mid_block"), "{err}");
    }

    #[test]
    fn uneven_lists_are_written_in_full() {
        let mut c = UNetConfig::sd15_motion_v1_5_2();
        c.layers_per_block = vec![1, 2, 2, 3];
        c.num_attention_heads = vec![5, 8, 8, 8];
        c.transformer_layers_per_mid_block = 2;
        c.reverse_transformer_layers_per_block = vec![1, 2, 1, 1];
        let m = c.motion.as_mut().unwrap();
        m.num_attention_heads = vec![4, 8, 8, 8];
        m.reverse_num_attention_heads = vec![8, 8, 8, 4];
        m.transformer_layers_per_block = vec![1, 1, 2, 2];
        m.reverse_transformer_layers_per_block = vec![2, 2, 1, 1];
        m.transformer_layers_per_mid_block = 3;
        assert_round_trips(&c);
        let full = c.to_unet_motion_config().unwrap();
        assert_eq!(full.common.layers_per_block, PerBlock::Each(vec![1, 2, 2, 3]));
        assert_eq!(full.reverse_transformer_layers_per_block, Some(PerBlock::Each(vec![1, 2, 1, 1])));
        assert_eq!(full.transformer_layers_per_mid_block, Some(2));
        assert_eq!(full.temporal_transformer_layers_per_mid_block, Some(3));

        // Up blocks that do not mirror the down blocks exist only in the full format.
        c.motion.as_mut().unwrap().reverse_num_attention_heads = vec![8, 8, 4, 8];
        assert_eq!(
            UNetConfig::from_unet_motion(&c.to_unet_motion_config().unwrap()).unwrap(),
            c,
            "the full format keeps reverse heads"
        );
        let err = c.to_motion_adapter_config().unwrap_err().to_string();
        assert!(err.contains("reverse_motion_num_attention_heads"), "{err}");
    }

    #[test]
    fn what_diffusers_cannot_hold_is_refused() {
        let err = UNetConfig::sd15().to_motion_adapter_config().unwrap_err().to_string();
        assert_eq!(err, "config field `motion`: the UNet has no motion modules");
        assert!(UNetConfig::sd15().to_unet_motion_config().is_err());
        let mut c = UNetConfig::sd15_motion_v1_5_2();
        c.motion.as_mut().unwrap().norm_per_frame = true;
        assert!(c.to_motion_adapter_config().unwrap_err().to_string().contains("norm_per_frame"));
        let mut c = UNetConfig::sd15_motion_v1_5_2();
        c.freq_shift = 1.0;
        assert!(c.to_unet_motion_config().unwrap_err().to_string().contains("freq_shift"));
        assert!(c.to_motion_adapter_config().is_ok(), "the adapter does not carry the time projection");
    }
}
