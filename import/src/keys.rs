//! Checkpoint key names: diffusers <-> avdm module paths, and original AnimateDiff -> diffusers.
//!
//! avdm's modules carry diffusers' names, so only three spellings differ: `ff.net.0.proj`
//! (GEGLU projection), `ff.net.2` (feed-forward output) and `to_out.0` (attention output).
//! Norm `weight/bias` <-> `gamma/beta` and Linear transposes are the PyTorch adapter's job.

/// (diffusers spelling, avdm spelling) of the path segments that differ (`FeedForward.net`
/// is the only `net` in the tree).
const RENAMES: [(&str, &str); 3] = [(".net.0.proj.", ".geglu."), (".net.2.", ".out."), (".to_out.0.", ".to_out.")];

/// Applies the segment renames in one direction, also at the start of the key.
fn rename_segments(key: &str, to_avdm: bool) -> String {
    let dotted =
        RENAMES.iter().fold(format!(".{key}"), |k, (d, a)| if to_avdm { k.replace(d, a) } else { k.replace(a, d) });
    dotted[1..].to_string()
}

/// diffusers state-dict key -> avdm module path.
pub fn diffusers_to_avdm(key: &str) -> String {
    rename_segments(key, true)
}

/// avdm module path -> diffusers state-dict key.
pub fn avdm_to_diffusers(path: &str) -> String {
    rename_segments(path, false)
}

/// Whether a diffusers key is the saved copy of the motion modules' sinusoidal positions (a
/// buffer we compute instead of loading).
pub fn is_positions_buffer(key: &str) -> bool {
    key.ends_with(".pos_embed.pe")
}

/// What a key of an original AnimateDiff motion-module checkpoint (`mm_sd_v15_v2.ckpt`) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginalKey {
    /// A weight, under its diffusers name.
    Weight(String),
    /// A `pos_encoder.pe` buffer; the diffusers name of the block's `pos_embed.pe`.
    Positions(String),
}

/// Converts an original AnimateDiff key as diffusers' `convert_animatediff_checkpoint_to_diffusers`
/// does: `.temporal_transformer` dropped, `norms.0/1` -> `norm1/2`, `ff_norm` -> `norm3`,
/// `attention_blocks.0/1` -> `attn1/2`. Leading `module.` (DataParallel) is dropped.
pub fn original_motion_to_diffusers(key: &str) -> OriginalKey {
    let key = key.strip_prefix("module.").unwrap_or(key);
    let mut k = key.replace(".temporal_transformer", "");
    for (old, new) in [
        (".norms.0.", ".norm1."),
        (".norms.1.", ".norm2."),
        (".ff_norm.", ".norm3."),
        (".attention_blocks.0.", ".attn1."),
        (".attention_blocks.1.", ".attn2."),
    ] {
        k = k.replace(old, new);
    }
    match k.strip_suffix(".pos_encoder.pe") {
        // `...transformer_blocks.k.attn1.pos_encoder.pe` -> `...transformer_blocks.k.pos_embed.pe`
        Some(attn) => {
            let block = attn.rsplit_once('.').map_or(attn, |(block, _)| block);
            OriginalKey::Positions(format!("{block}.pos_embed.pe"))
        }
        None => OriginalKey::Weight(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_round_trip() {
        let d = "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight";
        assert_eq!(diffusers_to_avdm(d), "down_blocks.0.attentions.0.transformer_blocks.0.ff.geglu.weight");
        assert_eq!(avdm_to_diffusers(&diffusers_to_avdm(d)), d);
        let d = "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.bias";
        assert_eq!(diffusers_to_avdm(d), "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.bias");
        assert_eq!(
            diffusers_to_avdm("up_blocks.1.motion_modules.0.transformer_blocks.0.ff.net.2.weight"),
            "up_blocks.1.motion_modules.0.transformer_blocks.0.ff.out.weight"
        );
        assert_eq!(diffusers_to_avdm("net.0.proj.bias"), "geglu.bias");
        assert_eq!(avdm_to_diffusers("to_out.weight"), "to_out.0.weight");
        assert_eq!(diffusers_to_avdm("net.0.proj.bias"), "geglu.bias");
        assert_eq!(avdm_to_diffusers("to_out.weight"), "to_out.0.weight");
    }

    #[test]
    fn original_keys_convert_like_diffusers() {
        let k = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight";
        assert_eq!(
            original_motion_to_diffusers(k),
            OriginalKey::Weight("down_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_out.0.weight".into())
        );
        let k = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.norms.0.bias";
        assert_eq!(
            original_motion_to_diffusers(k),
            OriginalKey::Weight("mid_block.motion_modules.0.transformer_blocks.0.norm1.bias".into())
        );
        let k = "up_blocks.0.motion_modules.2.temporal_transformer.transformer_blocks.0.ff_norm.weight";
        assert_eq!(
            original_motion_to_diffusers(k),
            OriginalKey::Weight("up_blocks.0.motion_modules.2.transformer_blocks.0.norm3.weight".into())
        );
        let k = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe";
        assert_eq!(
            original_motion_to_diffusers(k),
            OriginalKey::Positions("down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe".into())
        );
    }
}
