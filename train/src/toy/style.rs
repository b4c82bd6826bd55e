//! The toy world's drawing styles and a probe that tells them apart in a clip: the toy's
//! counterpart of an image model's look (the paper's Fig. 5 swaps the 2D teacher for another
//! fine-tune of the same family, and the student takes its look).

use serde::{Deserialize, Serialize};

/// How the shapes are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Solid shapes (the toy teacher's world).
    #[default]
    Filled,
    /// Hollow shapes: an edge [`OUTLINE`] pixels wide.
    Outline,
}

/// Width in pixels of an [`Style::Outline`] shape's edge.
pub const OUTLINE: f32 = 1.5;

impl std::str::FromStr for Style {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "filled" => Ok(Self::Filled),
            "outline" => Ok(Self::Outline),
            _ => Err(format!("{s:?} is not a style (filled, outline)")),
        }
    }
}

/// Pixels at least this bright (of the brightest) belong to the shape; the streak behind it
/// is at most half as bright.
const SHAPE_LEVEL: f32 = 0.7;

/// The style a clip `(3, F, S, S)` in `[-1, 1]` looks drawn in: per frame, the 3x3 pixels
/// around the centre of the shape's bright pixels hold a dark one in a hollow shape and none
/// in a solid one; the majority of frames decides (a frame without a shape counts as neither).
pub fn style_of(clip: &[f32], frames: usize, size: usize) -> Style {
    let plane = size * size;
    assert_eq!(clip.len(), 3 * frames * plane, "a (3, {frames}, {size}, {size}) clip");
    let mut hollow = 0i64;
    for f in 0..frames {
        // Brightness in [0, 1]: the brightest channel.
        let bright: Vec<f32> = (0..plane)
            .map(|p| (0..3).map(|c| (clip[(c * frames + f) * plane + p] + 1.0) / 2.0).fold(0.0, f32::max))
            .collect();
        let peak = bright.iter().copied().fold(0.0, f32::max);
        if peak < 0.25 {
            continue;
        }
        let (mut sum, mut cx, mut cy) = (0.0f32, 0.0f32, 0.0f32);
        for (p, &b) in bright.iter().enumerate() {
            if b >= SHAPE_LEVEL * peak {
                sum += b;
                cx += b * (p % size) as f32;
                cy += b * (p / size) as f32;
            }
        }
        let (x, y) = ((cx / sum).round() as i64, (cy / sum).round() as i64);
        let mut centre = Vec::new();
        for (dx, dy) in (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (dx, dy))) {
            let (px, py) = (x + dx, y + dy);
            if (0..size as i64).contains(&px) && (0..size as i64).contains(&py) {
                centre.push(bright[py as usize * size + px as usize]);
            }
        }
        let darkest = centre.iter().copied().fold(f32::INFINITY, f32::min);
        hollow += if darkest < 0.5 * peak { 1 } else { -1 };
    }
    if hollow > 0 { Style::Outline } else { Style::Filled }
}

/// The fraction of `clips (N, 3, F, S, S)` (flattened) that look drawn in `style`.
pub fn style_accuracy(clips: &[f32], frames: usize, size: usize, style: Style) -> f64 {
    let len = 3 * frames * size * size;
    let n = clips.len() / len.max(1);
    let hits = clips.chunks_exact(len).filter(|clip| style_of(clip, frames, size) == style).count();
    hits as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::world::{Split, ToyWorld};

    #[test]
    fn the_probe_tells_the_styles_apart_on_real_clips() {
        for style in [Style::Filled, Style::Outline] {
            let world = ToyWorld { style, ..ToyWorld::default() };
            let clips: Vec<f32> = (0..96).flat_map(|i| world.render(&world.spec(3, Split::Eval, i))).collect();
            let (frames, size) = (world.frames, world.size);
            assert_eq!(style_accuracy(&clips, frames, size, style), 1.0, "{style:?}");
        }
        assert_eq!("outline".parse::<Style>(), Ok(Style::Outline));
        assert!("hollow".parse::<Style>().unwrap_err().contains("filled, outline"));
    }

    #[test]
    fn an_outline_is_hollow_and_within_the_filled_shape() {
        let filled = ToyWorld { trail: 0.0, ..ToyWorld::default() };
        let outline = ToyWorld { style: Style::Outline, ..filled };
        for i in 0..12 {
            let spec = filled.spec(0, Split::Eval, i);
            let (a, b) = (filled.render(&spec), outline.render(&spec));
            let lit = |v: &[f32]| v.iter().filter(|&&x| x > -1.0).count();
            assert!(lit(&b) < lit(&a) && lit(&b) > 0, "clip {i}: an outline draws fewer pixels");
            assert!(a.iter().zip(&b).all(|(&x, &y)| y <= x + 1e-6), "clip {i}: drawn only where the shape is");
        }
    }
}
