//! Toy-world evaluation of a text-to-video model and sampler: Fréchet distance of judge
//! features against real clips (with the real-vs-real floor), prompt accuracy of the judge on
//! the prompted attributes, temporal flicker against real clips, NFE and seconds per clip.

use std::collections::BTreeMap;
use std::time::Instant;

use std::path::Path;

use avdm_import::{ClipTokenizer, Video, write_video};
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::{Sampler, VideoPipeline};
use avdm_model::sched::{DdimConfig, DdimScheduler, StudentConfig, StudentSampler};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::clip_frames::{ClipSampling, ClipStart, ShortVideos};
use crate::data::decode::read_clip;
use crate::error::TrainError;
use crate::eval::judge::Judge;
use crate::metrics::{Gaussian, frame_change, frechet_distance, prompt_diversity};
use crate::monitor::progress::Progress;
use crate::teacher::caption_ids;
use crate::toy::style::{Style, style_fractions};
use crate::toy::world::{Attributes, ClipSpec, Split, ToyWorld};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// What an evaluation samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Clips generated (one per eval prompt, cycling through all 48 combinations).
    pub clips: usize,
    /// Clips per sampling batch.
    pub batch: usize,
    /// Threads sampling batches side by side (Burn's CPU backend runs most operations on one
    /// thread).
    pub threads: usize,
    /// Seed of the eval prompts, the real clips and the sampling noise.
    pub seed: u64,
    pub world: ToyWorld,
    /// The prompts, clip `i` prompted by `prompts[i % len]` (an eval-prompt set); empty: the
    /// world's eval split (all 48 combinations in turn).
    #[serde(default)]
    pub prompts: Vec<Attributes>,
    /// Whether to show progress (a bar or log lines on stderr).
    #[serde(skip, default = "shown")]
    pub progress: bool,
}

fn shown() -> bool {
    true
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self { clips: 256, batch: 16, threads: 1, seed: 0, world: ToyWorld::default(), prompts: vec![], progress: true }
    }
}

/// Statistics of real clips for the eval prompts.
pub struct RealReference {
    pub gaussian: Gaussian,
    /// Fréchet distance between two independent real sets of the same size: the best a model
    /// can expect to reach.
    pub floor: f64,
    pub flicker: f64,
    /// The judge's prompt accuracy on real clips.
    pub accuracy: f64,
    /// Real clips' diversity per prompt ([`prompt_diversity`]), where prompts repeat.
    pub diversity: Option<f64>,
}

/// One row of the eval table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub name: String,
    pub steps: usize,
    pub guidance: Option<f32>,
    pub nfe: usize,
    pub clips: usize,
    pub frechet: f64,
    pub frechet_floor: f64,
    /// Mean over clips and attributes of "the judge reads the prompted attribute".
    pub accuracy: f64,
    /// Per attribute: shape, colour, direction.
    pub attribute_accuracy: [f64; 3],
    /// Fraction of clips with all three attributes right.
    pub exact: f64,
    pub flicker: f64,
    pub flicker_real: f64,
    /// Mean pairwise distance of the judge's features among the clips of each prompt
    /// ([`prompt_diversity`]; `None` when no prompt has two clips), and the real clips'.
    #[serde(default)]
    pub diversity: Option<f64>,
    #[serde(default)]
    pub diversity_real: Option<f64>,
    /// Fraction of clips the style probe reads as drawn in each style ([`crate::toy::style`]):
    /// the toy teacher's world is filled; the look of a restyled 2D teacher is another.
    #[serde(default)]
    pub style: Option<BTreeMap<Style, f64>>,
    pub seconds_per_clip: f64,
}

/// The prompt of each clip, as a key that groups clips of one prompt.
fn prompt_keys(prompted: impl Iterator<Item = Attributes>) -> Vec<[usize; 3]> {
    prompted.map(|a| a.as_array()).collect()
}

/// Accuracy figures of predictions against the prompted attributes: (mean, per attribute,
/// exact).
fn accuracy(predictions: &[[usize; 3]], prompted: impl ExactSizeIterator<Item = Attributes>) -> (f64, [f64; 3], f64) {
    let n = prompted.len().max(1) as f64;
    let mut per = [0.0; 3];
    let mut exact = 0.0;
    for (p, attributes) in predictions.iter().zip(prompted) {
        let truth = attributes.as_array();
        let hits: Vec<bool> = (0..3).map(|a| p[a] == truth[a]).collect();
        for a in 0..3 {
            per[a] += hits[a] as u8 as f64 / n;
        }
        exact += hits.iter().all(|&h| h) as u8 as f64 / n;
    }
    (per.iter().sum::<f64>() / 3.0, per, exact)
}

/// The eval prompts' specs: the world's eval split, or the prompt set's attributes in turn,
/// each placed at random (from the seed and the clip's index).
pub fn eval_specs(settings: &EvalSettings) -> Vec<ClipSpec> {
    let world = &settings.world;
    (0..settings.clips as u64)
        .map(|i| match settings.prompts.as_slice() {
            [] => world.spec(settings.seed, Split::Eval, i),
            prompts => {
                let mut rng =
                    StdRng::seed_from_u64(settings.seed ^ 0x9207_7E57 ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                world.place(prompts[i as usize % prompts.len()], &mut rng)
            }
        })
        .collect()
}

fn attributes_of(specs: &[ClipSpec]) -> impl ExactSizeIterator<Item = Attributes> + '_ {
    specs.iter().map(|s| s.attributes)
}

/// Judge features and predictions of batches of clips `(B, 3, F, H, W)`, and their mean frame
/// change.
fn judge_clips(judge: &Judge, batches: impl Iterator<Item = Tensor<5>>) -> (Vec<Vec<f32>>, Vec<[usize; 3]>, f64) {
    let (mut features, mut predictions, mut change) = (Vec::new(), Vec::new(), 0.0);
    for clips in batches {
        change += frame_change(&clips) * clips.dims()[0] as f64;
        let (f, p) = judge.predict(clips);
        features.extend(f);
        predictions.extend(p);
    }
    let n = predictions.len().max(1) as f64;
    (features, predictions, change / n)
}

/// [`judge_clips`] of the specs' rendered clips.
fn judge_all(
    judge: &Judge,
    world: &ToyWorld,
    specs: &[ClipSpec],
    batch: usize,
    device: &Device,
) -> (Vec<Vec<f32>>, Vec<[usize; 3]>, f64) {
    judge_clips(judge, specs.chunks(batch.max(1)).map(|chunk| world.render_batch(chunk, device)))
}

/// The judge's accuracy figures on real clips of the eval prompts: (mean, per attribute
/// [shape, colour, direction], all three right).
pub fn real_accuracy(judge: &Judge, settings: &EvalSettings, device: &Device) -> (f64, [f64; 3], f64) {
    let specs = eval_specs(settings);
    let (_, predictions, _) = judge_all(judge, &settings.world, &specs, settings.batch, device);
    accuracy(&predictions, attributes_of(&specs))
}

/// Real clips of the eval prompts, and a second independent real set for the floor.
pub fn real_reference(judge: &Judge, settings: &EvalSettings, device: &Device) -> Result<RealReference, TrainError> {
    let specs = eval_specs(settings);
    let (features, predictions, flicker) = judge_all(judge, &settings.world, &specs, settings.batch, device);
    let other = EvalSettings { seed: settings.seed.wrapping_add(0x0F1_00A), ..settings.clone() };
    let (other_features, _, _) = judge_all(judge, &settings.world, &eval_specs(&other), settings.batch, device);
    let gaussian = Gaussian::fit(&features)?;
    let floor = frechet_distance(&gaussian, &Gaussian::fit(&other_features)?);
    let diversity = prompt_diversity(&features, &prompt_keys(attributes_of(&specs)));
    Ok(RealReference { gaussian, floor, flicker, accuracy: accuracy(&predictions, attributes_of(&specs)).0, diversity })
}

/// Real clips from reference videos, video `j` the real clip of prompt `prompts[j]`: the first
/// `world.frames` frames at `stride` (reduced for short videos), resized and centre-cropped to
/// `world.size`. The floor is the Fréchet distance between the two halves of the set. Videos
/// that cannot be decoded are left out and returned as `path: reason`; fewer than 4 left is an
/// error.
pub fn real_reference_from_videos(
    judge: &Judge,
    videos: &[&Path],
    prompts: &[Attributes],
    stride: usize,
    settings: &EvalSettings,
    device: &Device,
) -> Result<(RealReference, Vec<String>), TrainError> {
    let world = &settings.world;
    let sampling = ClipSampling { frames: world.frames, stride, short_videos: ShortVideos::ReduceStride };
    let (mut clips, mut prompted, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (path, attributes) in videos.iter().zip(prompts) {
        match read_clip(path, &sampling, ClipStart::First, world.size) {
            Ok(clip) => {
                let data = TensorData::new(clip.data, [1, 3, clip.frames, clip.size, clip.size]);
                clips.push(Tensor::<5>::from_data(data, device));
                prompted.push(*attributes);
            }
            Err(reason) => skipped.push(format!("{}: {reason}", path.display())),
        }
    }
    if clips.len() < 4 {
        let message = format!("{} of {} reference videos decoded; a Fréchet floor needs 4", clips.len(), videos.len());
        return Err(TrainError::setting("reference videos", message));
    }
    let batches = clips.chunks(settings.batch.max(1)).map(|c| Tensor::cat(c.to_vec(), 0)).collect::<Vec<_>>();
    let (features, predictions, flicker) = judge_clips(judge, batches.into_iter());
    let half = features.len() / 2;
    let floor = frechet_distance(&Gaussian::fit(&features[..half])?, &Gaussian::fit(&features[half..])?);
    let reference = RealReference {
        gaussian: Gaussian::fit(&features)?,
        floor,
        flicker,
        diversity: prompt_diversity(&features, &prompt_keys(prompted.iter().copied())),
        accuracy: accuracy(&predictions, prompted.into_iter()).0,
    };
    Ok((reference, skipped))
}

/// What one sampled batch of clips gave.
struct BatchResult {
    features: Vec<Vec<f32>>,
    predictions: Vec<[usize; 3]>,
    /// Frame change summed over the batch's clips.
    change: f64,
    /// `(B, 3, F, H, W)` in `[-1, 1]`.
    video: Tensor<5>,
}

/// Samples batch `index` of the eval prompts (its own noise stream, so batches can run in any
/// order) and judges it.
#[allow(clippy::too_many_arguments)]
fn sample_batch(
    index: usize,
    chunk: &[ClipSpec],
    pipeline: &VideoPipeline,
    tokenizer: &ClipTokenizer,
    sampler: &Sampler,
    judge: &Judge,
    settings: &EvalSettings,
    device: &Device,
) -> Result<BatchResult, TrainError> {
    let world = &settings.world;
    let captions: Vec<String> = chunk.iter().map(|s| s.attributes.caption()).collect();
    let latent = [world.frames, world.size, world.size];
    let video =
        sample_videos(pipeline, tokenizer, sampler, &captions, latent, batch_seed(settings.seed, index), device)?;
    let change = frame_change(&video) * chunk.len() as f64;
    let (features, predictions) = judge.predict(video.clone());
    Ok(BatchResult { features, predictions, change, video })
}

/// The noise seed of sampling batch `index` (each batch its own stream, so batches can run in
/// any order or on any thread).
pub fn batch_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// One video per prompt, `(B, 3, F, H, W)` in `[-1, 1]`, sampled from noise of `seed` at the
/// latent size `[F, h, w]`, with the empty prompt as the negative one when `sampler` guides.
pub fn sample_videos(
    pipeline: &VideoPipeline,
    tokenizer: &ClipTokenizer,
    sampler: &Sampler,
    prompts: &[String],
    [frames, height, width]: [usize; 3],
    seed: u64,
    device: &Device,
) -> Result<Tensor<5>, TrainError> {
    let mut noise = NoiseSource::new(seed);
    let ids = caption_ids(tokenizer, prompts, device)?;
    let negative = sampler
        .uses_guidance()
        .then(|| caption_ids(tokenizer, &vec![String::new(); prompts.len()], device))
        .transpose()?;
    let text = pipeline.encode_prompts(ids, negative)?;
    let latents = noise.normal([prompts.len(), pipeline.latent_channels(), frames, height, width], device);
    let clean = pipeline.denoise(latents, &text, sampler, &mut noise, |_, _| {})?;
    // (B, F, 3, H, W) in [0, 1] -> (B, 3, F, H, W) in [-1, 1]
    Ok(pipeline.decode(clean).permute([0, 2, 1, 3, 4]) * 2.0 - 1.0)
}

/// Samples one clip per eval prompt with `sampler`, batches spread over `settings.threads`
/// threads, and measures them. Returns the row and the generated clips `(N, 3, F, H, W)` in
/// `[-1, 1]`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    name: &str,
    pipeline: &VideoPipeline,
    tokenizer: &ClipTokenizer,
    sampler: &Sampler,
    judge: &Judge,
    reference: &RealReference,
    settings: &EvalSettings,
    device: &Device,
) -> Result<(EvalRow, Tensor<5>), TrainError> {
    let specs = eval_specs(settings);
    let chunks: Vec<&[ClipSpec]> = specs.chunks(settings.batch.max(1)).collect();
    let workers = settings.threads.clamp(1, chunks.len().max(1));
    let progress = if settings.progress {
        Progress::new(name, 0, specs.len(), settings.batch.max(1) * 4)
    } else {
        Progress::hidden(specs.len())
    };
    let started = Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut results: Vec<Option<BatchResult>> = std::thread::scope(|scope| {
        for worker in 0..workers {
            let (sender, chunks) = (sender.clone(), &chunks);
            let (pipeline, judge) = (pipeline.clone(), judge.clone());
            scope.spawn(move || {
                for index in (worker..chunks.len()).step_by(workers) {
                    let result =
                        sample_batch(index, chunks[index], &pipeline, tokenizer, sampler, &judge, settings, device);
                    let failed = result.is_err();
                    if sender.send((index, result)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let mut results: Vec<Option<BatchResult>> = chunks.iter().map(|_| None).collect();
        let mut done = 0;
        for (index, result) in receiver {
            let result = result?;
            done += result.predictions.len();
            results[index] = Some(result);
            progress.update(done, &[]);
        }
        Ok::<_, TrainError>(results)
    })?;
    progress.finish();
    let (mut features, mut predictions, mut clips, mut change) = (Vec::new(), Vec::new(), Vec::new(), 0.0);
    for result in results.iter_mut().map(|r| r.take().expect("every batch was sampled")) {
        features.extend(result.features);
        predictions.extend(result.predictions);
        change += result.change;
        clips.push(result.video);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (mean, per, exact) = accuracy(&predictions, attributes_of(&specs));
    let frechet = frechet_distance(&Gaussian::fit(&features)?, &reference.gaussian);
    let guidance = match sampler {
        Sampler::Ddim { guidance_scale, .. } if sampler.uses_guidance() => Some(*guidance_scale),
        _ => None,
    };
    let row = EvalRow {
        name: name.into(),
        steps: sampler.steps(),
        guidance,
        nfe: sampler.nfe(),
        clips: specs.len(),
        frechet,
        frechet_floor: reference.floor,
        accuracy: mean,
        attribute_accuracy: per,
        exact,
        flicker: change / specs.len().max(1) as f64,
        flicker_real: reference.flicker,
        diversity: prompt_diversity(&features, &prompt_keys(attributes_of(&specs))),
        diversity_real: reference.diversity,
        style: None,
        seconds_per_clip: seconds / specs.len().max(1) as f64,
    };
    let clips = Tensor::cat(clips, 0);
    let values = clips.to_data().convert::<f32>().try_to_vec::<f32>().expect("f32 clips");
    let (frames, size) = (settings.world.frames, settings.world.size);
    let row = EvalRow { style: Some(style_fractions(&values, frames, size)), ..row };
    Ok((row, clips))
}

/// The style most clips are drawn in and its fraction, as `filled 0.96`.
fn style_cell(fractions: &BTreeMap<Style, f64>) -> String {
    fractions
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or("-".into(), |(style, fraction)| format!("{} {fraction:.2}", style.name()))
}

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[EvalRow], real_accuracy: f64) -> String {
    let mut out = String::from(
        "| model | steps | CFG | NFE | clips | Fréchet (real floor) | prompt acc. | shape / colour / direction | all 3 | flicker (real) | diversity (real) | style | s/clip |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let [s, c, d] = r.attribute_accuracy;
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.3} ({:.3}) | {:.3} | {:.2} / {:.2} / {:.2} | {:.3} | {:.4} ({:.4}) | {} ({}) | {} | {:.2} |\n",
            r.name,
            r.steps,
            r.guidance.map_or("-".into(), |g| format!("{g}")),
            r.nfe,
            r.clips,
            r.frechet,
            r.frechet_floor,
            r.accuracy,
            s,
            c,
            d,
            r.exact,
            r.flicker,
            r.flicker_real,
            r.diversity.map_or("-".into(), |d| format!("{d:.3}")),
            r.diversity_real.map_or("-".into(), |d| format!("{d:.3}")),
            r.style.as_ref().map_or("-".into(), style_cell),
            r.seconds_per_clip
        );
    }
    out + &format!("\nJudge accuracy on real clips of the same prompts: {real_accuracy:.3} (chance: 0.278).\n")
}

/// DDIM with `steps` steps and classifier-free guidance `guidance` on a scheduler config.
pub fn ddim_sampler(config: &DdimConfig, steps: usize, guidance: f32) -> Result<Sampler, TrainError> {
    let mut scheduler = DdimScheduler::new(config.clone())?;
    scheduler.set_timesteps(steps)?;
    Ok(Sampler::Ddim { scheduler, guidance_scale: guidance })
}

/// The student's sampler on a scheduler config's schedule and prediction type; the betas the
/// student was trained on (`student.beta_schedule`, from its `student.json`) win over the
/// config's.
pub fn student_sampler(config: &DdimConfig, student: &StudentConfig) -> Result<Sampler, TrainError> {
    let student = StudentConfig { prediction_type: config.prediction_type, ..student.clone() };
    let schedule = DdimScheduler::new(student.scheduler(config))?.schedule;
    Ok(Sampler::Student(StudentSampler::new(schedule, &student)?))
}

/// The first 16 clips `(N, 3, F, H, W)` in `[-1, 1]` as a 4x4 GIF grid.
pub fn write_grid(clips: &Tensor<5>, path: &Path) -> Result<(), TrainError> {
    let [n, c, f, h, w] = clips.dims();
    let side = 4.min(n);
    let rows = (n / side).min(4);
    let tiles = clips.clone().slice([0..rows * side, 0..c, 0..f, 0..h, 0..w]);
    // (rows, side, 3, F, H, W) -> (F, 3, rows, H, side, W)
    let grid = tiles.reshape([rows, side, c, f, h, w]).permute([3, 2, 0, 4, 1, 5]).reshape([f, c, rows * h, side * w]);
    write_video(&Video::from_tensor(grid / 2.0 + 0.5), path, 8)?;
    Ok(())
}
