//! The toy world's drawing styles and a probe that tells them apart in a clip: the toy's
//! counterpart of an image model's look (the paper's Fig. 5 swaps the 2D teacher for another
//! fine-tune of the same family, and the student takes its look).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the shapes are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Solid shapes on black (the toy teacher's world).
    #[default]
    Filled,
    /// Hollow shapes on black: an edge [`OUTLINE`] pixels wide.
    Outline,
    /// Solid shapes on a grey backdrop ([`BACKDROP`]): a change of palette that touches every
    /// pixel of a frame.
    Grey,
}

/// Width in pixels of an [`Style::Outline`] shape's edge.
pub const OUTLINE: f32 = 1.5;

/// The value, in `[-1, 1]`, of every channel of the [`Style::Grey`] backdrop (30 % grey).
pub const BACKDROP: f32 = -0.4;

impl Style {
    pub const ALL: [Style; 3] = [Style::Filled, Style::Outline, Style::Grey];

    pub fn name(self) -> &'static str {
        match self {
            Self::Filled => "filled",
            Self::Outline => "outline",
            Self::Grey => "grey",
        }
    }

    /// The value, in `[-1, 1]`, of every channel of the background.
    pub fn background(self) -> f32 {
        if self == Self::Grey { BACKDROP } else { -1.0 }
    }
}

impl std::str::FromStr for Style {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|style| style.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|style| style.name()).collect();
            format!("{s:?} is not a style ({})", names.join(", "))
        })
    }
}

/// Pixels at least this bright (of the brightest) belong to the shape; the streak behind it
/// is at most half as bright.
const SHAPE_LEVEL: f32 = 0.7;

/// A clip whose median brightness (in `[0, 1]`) is above this has a lit backdrop: the grey
/// one is at 0.3, black at 0.
const BACKDROP_LEVEL: f32 = 0.1;

/// ... if the backdrop is smooth: the median brightness step between neighbouring pixels is
/// below this (0 on a drawn backdrop, about 0.03 on a student's; 0.14 on the coloured noise of
/// an unfinished sample, which is no backdrop).
const BACKDROP_GRAIN: f32 = 0.08;

/// The median of `values` (reordered).
fn median(values: &mut [f32]) -> f32 {
    let middle = values.len() / 2;
    *values.select_nth_unstable_by(middle, f32::total_cmp).1
}

/// The style a clip `(3, F, S, S)` in `[-1, 1]` looks drawn in. A clip whose median pixel is
/// lit, on a smooth backdrop, is on the grey backdrop. Otherwise, per frame, the 3x3 pixels
/// around the centre of the shape's bright pixels hold a dark one in a hollow shape and none
/// in a solid one, and the majority of frames decides (a frame without a shape counts as
/// neither).
pub fn style_of(clip: &[f32], frames: usize, size: usize) -> Style {
    let plane = size * size;
    assert_eq!(clip.len(), 3 * frames * plane, "a (3, {frames}, {size}, {size}) clip");
    // Brightness in [0, 1] of every pixel, frame-major: the brightest channel.
    let brightness: Vec<f32> = (0..frames * plane)
        .map(|i| (0..3).map(|c| (clip[(c * frames + i / plane) * plane + i % plane] + 1.0) / 2.0).fold(0.0, f32::max))
        .collect();
    let mut grain: Vec<f32> = brightness
        .windows(2)
        .enumerate()
        .filter(|(i, _)| i % size + 1 < size)
        .map(|(_, w)| (w[0] - w[1]).abs())
        .collect();
    if median(&mut brightness.clone()) > BACKDROP_LEVEL && median(&mut grain) < BACKDROP_GRAIN {
        return Style::Grey;
    }
    let mut hollow = 0i64;
    for bright in brightness.chunks_exact(plane) {
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

/// The fraction of `clips (N, 3, F, S, S)` (flattened) that look drawn in each style.
pub fn style_fractions(clips: &[f32], frames: usize, size: usize) -> BTreeMap<Style, f64> {
    let len = 3 * frames * size * size;
    let read: Vec<Style> = clips.chunks_exact(len).map(|clip| style_of(clip, frames, size)).collect();
    let n = read.len().max(1) as f64;
    Style::ALL.into_iter().map(|style| (style, read.iter().filter(|&&s| s == style).count() as f64 / n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::world::{Split, ToyWorld};

    #[test]
    fn the_probe_tells_the_styles_apart_on_real_clips() {
        for style in Style::ALL {
            let world = ToyWorld { style, ..ToyWorld::default() };
            let clips: Vec<f32> = (0..96).flat_map(|i| world.render(&world.spec(3, Split::Eval, i))).collect();
            let fractions = style_fractions(&clips, world.frames, world.size);
            for (other, fraction) in fractions {
                assert_eq!(fraction, if other == style { 1.0 } else { 0.0 }, "{style:?} clips read as {other:?}");
            }
        }
        // Coloured noise (an unfinished sample) is lit but has no backdrop.
        let mut state = 1u64;
        let noise: Vec<f32> = (0..3 * 8 * 32 * 32)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        assert_ne!(style_of(&noise, 8, 32), Style::Grey);
        assert_eq!("outline".parse::<Style>(), Ok(Style::Outline));
        assert_eq!("grey".parse::<Style>(), Ok(Style::Grey));
        assert!("hollow".parse::<Style>().unwrap_err().contains("filled, outline, grey"));
    }

    #[test]
    fn a_grey_world_is_the_filled_world_on_a_grey_backdrop() {
        let filled = ToyWorld::default();
        let grey = ToyWorld { style: Style::Grey, ..filled };
        let plane = filled.frames * filled.size * filled.size;
        for i in 0..12 {
            let spec = filled.spec(0, Split::Eval, i);
            let (a, b) = (filled.render(&spec), grey.render(&spec));
            for p in 0..plane {
                let lit_on_black = (0..3).any(|c| a[c * plane + p] != -1.0);
                let lit_on_grey = (0..3).any(|c| b[c * plane + p] != BACKDROP);
                assert_eq!(lit_on_black, lit_on_grey, "clip {i}, pixel {p}: the same pixels are drawn");
            }
            // Inside the shape (opacity 1) the colour is the same on either background.
            let full = |v: &[f32]| v.iter().filter(|&&x| x == 1.0).count();
            assert_eq!(full(&a), full(&b), "clip {i}");
        }
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
