//! The toy world's procedural clips: one coloured shape moving in a straight line on black,
//! trailing a fading streak, captioned "a red square moving left".
//!
//! The streak is what a long exposure of a moving thing shows: it makes the direction of motion
//! visible in a single frame, as pose and blur make it visible in real photos. Without it no
//! still frame says which way a shape moves, so a 2D model trained on frames (stage 1 of the
//! teacher) would learn nothing from the direction words, and the motion modules (which see no
//! text) could not follow them either.
//!
//! Every clip is a pure function of `(seed, index)` and the split, so batches, eval sets and
//! resumed runs are reproducible without saving any generator state.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::style::{OUTLINE, Style};

/// The shapes of the toy world.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// The colours of the toy world and their RGB values in `[-1, 1]`.
pub const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [1.0, -1.0, -1.0]),
    ("green", [-1.0, 1.0, -1.0]),
    ("blue", [-1.0, -1.0, 1.0]),
    ("yellow", [1.0, 1.0, -1.0]),
];
/// Directions of motion and their unit steps `(dx, dy)` in image coordinates (y down).
pub const DIRECTIONS: [(&str, [f32; 2]); 4] =
    [("left", [-1.0, 0.0]), ("right", [1.0, 0.0]), ("up", [0.0, -1.0]), ("down", [0.0, 1.0])];

/// Number of classes of each attribute: shape, colour, direction.
pub const ATTRIBUTE_CLASSES: [usize; 3] = [SHAPES.len(), COLOURS.len(), DIRECTIONS.len()];
/// Attribute names, in the order of [`Attributes::as_array`].
pub const ATTRIBUTE_NAMES: [&str; 3] = ["shape", "colour", "direction"];

/// What a caption says about a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attributes {
    pub shape: usize,
    pub colour: usize,
    pub direction: usize,
}

impl Attributes {
    /// `[shape, colour, direction]` class indices.
    pub fn as_array(&self) -> [usize; 3] {
        [self.shape, self.colour, self.direction]
    }

    /// "a red square moving left".
    pub fn caption(&self) -> String {
        format!("a {} {} moving {}", COLOURS[self.colour].0, SHAPES[self.shape], DIRECTIONS[self.direction].0)
    }

    /// The attributes of a caption as [`Attributes::caption`] writes it (case, surrounding
    /// space and a final full stop aside); `None` for any other text.
    pub fn parse(caption: &str) -> Option<Attributes> {
        let caption = caption.trim().trim_end_matches('.').to_lowercase();
        Attributes::all().into_iter().find(|a| a.caption() == caption)
    }

    /// Every combination, in a fixed order (shape-major).
    pub fn all() -> Vec<Attributes> {
        let mut out = Vec::new();
        for shape in 0..SHAPES.len() {
            for colour in 0..COLOURS.len() {
                for direction in 0..DIRECTIONS.len() {
                    out.push(Attributes { shape, colour, direction });
                }
            }
        }
        out
    }

    /// Combinations never shown to the teacher: 6 of the 48, chosen so that every pair of
    /// attribute values still occurs in training (only the triple is new).
    pub fn is_held_out(&self) -> bool {
        (self.shape + self.colour + 2 * self.direction) % 8 == 3
    }
}

/// Which clips a stream draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training clips: every combination except the held-out ones.
    Train,
    /// Evaluation clips: all combinations in turn (held-out ones included), from their own seeds.
    Eval,
}

/// One clip's full description: what the caption says and where the shape is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipSpec {
    pub attributes: Attributes,
    /// Half-size of the shape in pixels (circle radius, square half-side, triangle half-width).
    pub radius: f32,
    /// Centre `(x, y)` in pixels at the first frame.
    pub start: [f32; 2],
    /// Pixels moved per frame along the direction.
    pub speed: f32,
}

/// The geometry of the toy world's clips.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ToyWorld {
    pub frames: usize,
    /// Width and height in pixels.
    pub size: usize,
    /// Range of [`ClipSpec::radius`], in pixels.
    pub radius: [f32; 2],
    /// Range of [`ClipSpec::speed`], in pixels per frame.
    pub speed: [f32; 2],
    /// Length in pixels of the streak behind the shape (0: none).
    pub trail: f32,
    /// How the shapes are drawn (absent from configs written before styles: filled).
    #[serde(default)]
    pub style: Style,
}

impl Default for ToyWorld {
    /// 8 frames of 32x32, filled shapes 4..7 px in half-size moving 1..2 px per frame, streaks
    /// of 6 px.
    fn default() -> Self {
        Self { frames: 8, size: 32, radius: [4.0, 7.0], speed: [1.0, 2.0], trail: 6.0, style: Style::Filled }
    }
}

/// Seeds of the two splits are kept apart by this offset.
const EVAL_STREAM: u64 = 0x5EED_0000_E7A1;
/// Samples per pixel side for anti-aliasing.
const SUPERSAMPLE: usize = 4;
/// Opacity of the streak where it leaves the shape; it fades linearly to 0 at its end.
const TRAIL_OPACITY: f32 = 0.5;

impl ToyWorld {
    /// The `index`-th clip of the split's stream for `seed`.
    pub fn spec(&self, seed: u64, split: Split, index: u64) -> ClipSpec {
        let stream = match split {
            Split::Train => seed,
            Split::Eval => seed ^ EVAL_STREAM,
        };
        let mut rng = StdRng::seed_from_u64(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
        let attributes = match split {
            Split::Train => {
                let trainable: Vec<Attributes> = Attributes::all().into_iter().filter(|a| !a.is_held_out()).collect();
                trainable[rng.random_range(0..trainable.len())]
            }
            Split::Eval => {
                let all = Attributes::all();
                all[(index % all.len() as u64) as usize]
            }
        };
        self.place(attributes, &mut rng)
    }

    /// A clip with the given attributes and random size, speed and start, such that the shape
    /// stays wholly inside the frame on every frame.
    pub fn place(&self, attributes: Attributes, rng: &mut StdRng) -> ClipSpec {
        let radius = rng.random_range(self.radius[0]..=self.radius[1]);
        let speed = rng.random_range(self.speed[0]..=self.speed[1]);
        let travel = speed * (self.frames.saturating_sub(1)) as f32;
        let size = self.size as f32;
        let [dx, dy] = DIRECTIONS[attributes.direction].1;
        let mut start = [0.0; 2];
        for (axis, d) in [dx, dy].into_iter().enumerate() {
            // The centre must stay within [radius, size - radius] over the whole path.
            let (lo, hi) = (radius, size - radius);
            let (lo, hi) = if d > 0.0 {
                (lo, hi - travel)
            } else if d < 0.0 {
                (lo + travel, hi)
            } else {
                (lo, hi)
            };
            start[axis] = if hi > lo { rng.random_range(lo..=hi) } else { (lo + hi) / 2.0 };
        }
        ClipSpec { attributes, radius, start, speed }
    }

    /// The shape's centre at frame `f`.
    pub fn centre(&self, spec: &ClipSpec, frame: usize) -> [f32; 2] {
        let [dx, dy] = DIRECTIONS[spec.attributes.direction].1;
        let step = spec.speed * frame as f32;
        [spec.start[0] + dx * step, spec.start[1] + dy * step]
    }

    /// Renders a clip as `C * F * H * W` values in `[-1, 1]` (channel-major, `(3, F, H, W)`).
    pub fn render(&self, spec: &ClipSpec) -> Vec<f32> {
        let (frames, size) = (self.frames, self.size);
        let colour = COLOURS[spec.attributes.colour].1;
        let background = self.style.background();
        let mut out = vec![background; 3 * frames * size * size];
        let inv = 1.0 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
        let reach = spec.radius + self.trail + 1.0;
        for f in 0..frames {
            let centre = self.centre(spec, f);
            for y in 0..size {
                for x in 0..size {
                    if (x as f32 + 0.5 - centre[0]).abs() > reach || (y as f32 + 0.5 - centre[1]).abs() > reach {
                        continue;
                    }
                    let mut opacity = 0.0;
                    for sy in 0..SUPERSAMPLE {
                        for sx in 0..SUPERSAMPLE {
                            let px = x as f32 + (sx as f32 + 0.5) / SUPERSAMPLE as f32;
                            let py = y as f32 + (sy as f32 + 0.5) / SUPERSAMPLE as f32;
                            opacity += self.opacity_at(spec, centre, px, py);
                        }
                    }
                    if opacity == 0.0 {
                        continue;
                    }
                    for (c, value) in colour.iter().enumerate() {
                        out[((c * frames + f) * size + y) * size + x] =
                            background + opacity * inv * (value - background);
                    }
                }
            }
        }
        out
    }

    /// Opacity at the point `(px, py)` of a frame whose shape is centred at `centre`: 1 inside
    /// the shape, fading along the streak behind it (1-px steps back along the direction).
    fn opacity_at(&self, spec: &ClipSpec, centre: [f32; 2], px: f32, py: f32) -> f32 {
        if self.covers(spec, px - centre[0], py - centre[1]) {
            return 1.0;
        }
        let [dx, dy] = DIRECTIONS[spec.attributes.direction].1;
        let steps = self.trail.ceil() as usize;
        (1..=steps)
            .map(|k| k as f32)
            .find(|&back| self.covers(spec, px - centre[0] + dx * back, py - centre[1] + dy * back))
            .map_or(0.0, |back| TRAIL_OPACITY * (1.0 - back / (self.trail + 1.0)))
    }

    /// Whether the offset `(x, y)` from the centre is drawn: inside the shape, and for an
    /// outline not inside the shape [`OUTLINE`] pixels smaller.
    fn covers(&self, spec: &ClipSpec, x: f32, y: f32) -> bool {
        let (shape, r) = (spec.attributes.shape, spec.radius);
        inside(shape, x, y, r) && (self.style != Style::Outline || !inside(shape, x, y, r - OUTLINE))
    }

    /// `n` clips of the split starting at `index`: `(n, 3, F, H, W)` in `[-1, 1]` and their specs.
    pub fn batch(&self, seed: u64, split: Split, index: u64, n: usize, device: &Device) -> (Tensor<5>, Vec<ClipSpec>) {
        let specs: Vec<ClipSpec> = (0..n as u64).map(|i| self.spec(seed, split, index + i)).collect();
        (self.render_batch(&specs, device), specs)
    }

    /// Renders clips into `(n, 3, F, H, W)`.
    pub fn render_batch(&self, specs: &[ClipSpec], device: &Device) -> Tensor<5> {
        let values: Vec<f32> = specs.iter().flat_map(|s| self.render(s)).collect();
        Tensor::from_data(TensorData::new(values, [specs.len(), 3, self.frames, self.size, self.size]), device)
    }
}

/// Whether the offset `(x, y)` from the centre lies inside the shape of half-size `r`.
fn inside(shape: usize, x: f32, y: f32, r: f32) -> bool {
    match SHAPES[shape] {
        "circle" => x * x + y * y <= r * r,
        "square" => x.abs() <= r && y.abs() <= r,
        // Upward isosceles triangle with base 2r at y = r and apex at y = -r.
        _ => y <= r && y >= -r && x.abs() <= (y + r) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_parse_back_into_their_attributes() {
        for a in Attributes::all() {
            assert_eq!(Attributes::parse(&a.caption()), Some(a));
        }
        let blue = Attributes::parse("  A blue circle moving up. ").unwrap();
        assert_eq!(blue.caption(), "a blue circle moving up");
        assert_eq!(Attributes::parse("a purple circle moving up"), None);
        assert_eq!(Attributes::parse("a cat playing the piano"), None);
    }

    #[test]
    fn held_out_combinations_leave_every_pair_in_training() {
        let all = Attributes::all();
        let held: Vec<_> = all.iter().filter(|a| a.is_held_out()).collect();
        assert_eq!(held.len(), 6);
        let train: Vec<_> = all.iter().filter(|a| !a.is_held_out()).collect();
        for a in &held {
            assert!(train.iter().any(|b| b.shape == a.shape && b.colour == a.colour));
            assert!(train.iter().any(|b| b.shape == a.shape && b.direction == a.direction));
            assert!(train.iter().any(|b| b.colour == a.colour && b.direction == a.direction));
        }
        let world = ToyWorld::default();
        assert!((0..500).all(|i| !world.spec(3, Split::Train, i).attributes.is_held_out()));
    }

    #[test]
    fn shapes_stay_in_frame() {
        let world = ToyWorld::default();
        for i in 0..300 {
            let spec = world.spec(1, Split::Train, i);
            for f in 0..world.frames {
                let [x, y] = world.centre(&spec, f);
                let lim = world.size as f32 - spec.radius;
                assert!(x >= spec.radius - 1e-4 && x <= lim + 1e-4 && y >= spec.radius - 1e-4 && y <= lim + 1e-4);
            }
        }
    }

    /// The centroid `[x, y]` of frame `f` of a rendered clip, each pixel weighted by how far it
    /// is lit above the background (summed over channels).
    fn intensity_centroid(world: &ToyWorld, clip: &[f32], f: usize) -> [f32; 2] {
        let plane = world.size * world.size;
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for p in 0..plane {
            let lit: f32 = (0..3).map(|c| clip[(c * world.frames + f) * plane + p] + 1.0).sum();
            sx += lit * (p % world.size) as f32;
            sy += lit * (p / world.size) as f32;
            n += lit;
        }
        [sx / n, sy / n]
    }

    /// Displacement `[dx, dy]` of the intensity centroid from the first to the last frame.
    fn centroid_shift(world: &ToyWorld, clip: &[f32]) -> [f32; 2] {
        let first = intensity_centroid(world, clip, 0);
        let last = intensity_centroid(world, clip, world.frames - 1);
        [last[0] - first[0], last[1] - first[1]]
    }

    /// The index in [`DIRECTIONS`] of the dominant axis and sign of a shift.
    fn direction_of([dx, dy]: [f32; 2]) -> usize {
        let name = if dx.abs() > dy.abs() {
            if dx < 0.0 { "left" } else { "right" }
        } else if dy < 0.0 {
            "up"
        } else {
            "down"
        };
        DIRECTIONS.iter().position(|(n, _)| *n == name).expect("known direction")
    }

    #[test]
    fn clips_are_deterministic_per_seed_and_move_as_captioned() {
        let world = ToyWorld::default();
        let a = world.render(&world.spec(5, Split::Train, 17));
        assert_eq!(a, world.render(&world.spec(5, Split::Train, 17)));
        assert_ne!(a, world.render(&world.spec(6, Split::Train, 17)));
        for i in 0..40 {
            let spec = world.spec(9, Split::Eval, i);
            let [dx, dy] = centroid_shift(&world, &world.render(&spec));
            // At least 1 px per frame along the captioned axis, little across it.
            assert!(dx.abs().max(dy.abs()) > 5.0 && dx.abs().max(dy.abs()) > 3.0 * dx.abs().min(dy.abs()));
            assert_eq!(direction_of([dx, dy]), spec.attributes.direction, "{:?}: moved {dx} {dy}", spec.attributes);
            assert!(spec.attributes.caption().ends_with(DIRECTIONS[spec.attributes.direction].0));
        }
    }

    #[test]
    fn a_single_frame_shows_the_direction_by_its_streak() {
        let world = ToyWorld::default();
        let plain = ToyWorld { trail: 0.0, ..world };
        // The last frame: the streak lies on the path, inside the frame.
        let centroid = |clip: &[f32]| intensity_centroid(&world, clip, world.frames - 1);
        for i in 0..40 {
            let spec = world.spec(3, Split::Eval, i);
            // The streak pulls the frame's intensity centroid back from the shape's own.
            let [tx, ty] = centroid(&world.render(&spec));
            let [sx, sy] = centroid(&plain.render(&spec));
            let [dx, dy] = DIRECTIONS[spec.attributes.direction].1;
            let ahead = (tx - sx) * dx + (ty - sy) * dy;
            assert!(ahead < -0.3, "{:?}: the streak is not behind the shape ({ahead})", spec.attributes);
        }
    }

    #[test]
    fn the_shipped_judge_agrees_with_captions_and_centroids() {
        let device = Device::flex();
        let dir = crate::toy::assets::default_assets_dir().join("judge");
        let judge = crate::eval::judge::Judge::load(&dir, &device).expect("the shipped judge (assets/toy/judge)");
        let world = ToyWorld::default();
        let specs: Vec<ClipSpec> = (0..96).map(|i| world.spec(11, Split::Eval, i)).collect();
        let (_, predictions) = judge.predict(world.render_batch(&specs, &device));
        let mut right = [0usize; 3];
        for (spec, predicted) in specs.iter().zip(&predictions) {
            let truth = spec.attributes.as_array();
            let measured = direction_of(centroid_shift(&world, &world.render(spec)));
            assert_eq!(measured, truth[2], "{:?}: the centroid moves elsewhere", spec.attributes);
            for a in 0..3 {
                right[a] += usize::from(predicted[a] == truth[a]);
            }
        }
        // Shape, colour, direction: the judge reads real clips (nearly) perfectly.
        assert!(right.iter().all(|&r| r >= 93), "judge right on {right:?} of 96 real clips");
    }
}
