//! PNG plots of a run's metrics, so that a finished or remote run can be read without the
//! dashboard: one `plots/<metric>.png` per metric of `metrics.jsonl` that has values (losses,
//! discriminator accuracies, gradient norms, the periodic toy eval), each the raw values (light)
//! with their moving average (dark) over the iterations, and `plots/plots.md` showing them all
//! with their axes' ranges. Written at every checkpoint and at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::checkpoint::write_file_atomically;
use crate::error::TrainError;

/// The metrics plotted, in the order of `plots.md`.
pub const PLOTTED: [&str; 11] = [
    "loss_adm",
    "loss_sdm",
    "loss_fake",
    "loss_disc",
    "disc_accuracy_real",
    "disc_accuracy_fake",
    "grad_norm_student",
    "grad_norm_fake",
    "grad_norm_head",
    "eval_frechet",
    "eval_accuracy",
];

const WIDTH: usize = 640;
const HEIGHT: usize = 320;
const MARGIN: usize = 12;
/// Iterations the moving average spans.
const SMOOTHING: usize = 10;

/// `(step, value)` of each plotted metric in `metrics.jsonl` text (unreadable lines skipped:
/// the last one may be half-written by a killed run).
fn series(text: &str) -> BTreeMap<&'static str, Vec<(f64, f64)>> {
    let mut out: BTreeMap<&'static str, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(report) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let step = report["step"].as_f64().unwrap_or_default() + 1.0;
        for name in PLOTTED {
            if let Some(value) = report[name].as_f64().filter(|v| v.is_finite()) {
                out.entry(name).or_default().push((step, value));
            }
        }
    }
    out
}

/// An RGB canvas.
struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self { rgb: vec![255; WIDTH * HEIGHT * 3] }
    }

    fn dot(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let at = (y as usize * WIDTH + x as usize) * 3;
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// A straight line (Bresenham), `thick` pixels wide.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: [u8; 3], thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut error) = (x0, y0, dx + dy);
        loop {
            for t in 0..thick {
                self.dot(x, y + t, colour);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * error;
            if e2 >= dy {
                error += dy;
                x += sx;
            }
            if e2 <= dx {
                error += dx;
                y += sy;
            }
        }
    }

    fn png(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, WIDTH as u32, HEIGHT as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("a PNG header in memory");
        writer.write_image_data(&self.rgb).expect("PNG data in memory");
        writer.finish().expect("a PNG in memory");
        bytes
    }
}

/// The axes' ranges of a series: steps and values (a flat series gets a unit range).
fn ranges(points: &[(f64, f64)]) -> ((f64, f64), (f64, f64)) {
    let fold = |f: fn(&(f64, f64)) -> f64| {
        points.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (steps, (lo, hi)) = (fold(|p| p.0), fold(|p| p.1));
    let values = if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    (steps, values)
}

/// The series' plot: a light grid, the raw values and their moving average.
fn plot(points: &[(f64, f64)]) -> Vec<u8> {
    let mut canvas = Canvas::new();
    let ((s0, s1), (v0, v1)) = ranges(points);
    let (w, h) = ((WIDTH - 2 * MARGIN) as f64, (HEIGHT - 2 * MARGIN) as f64);
    let x = |step: f64| MARGIN as i64 + ((step - s0) / (s1 - s0).max(1.0) * w).round() as i64;
    let y = |value: f64| (HEIGHT - MARGIN) as i64 - ((value - v0) / (v1 - v0) * h).round() as i64;
    for k in 0..=4 {
        let gy = y(v0 + (v1 - v0) * k as f64 / 4.0);
        canvas.line((MARGIN as i64, gy), ((WIDTH - MARGIN) as i64, gy), [225, 225, 225], 1);
    }
    let at = |&(s, v): &(f64, f64)| (x(s), y(v));
    let raw: Vec<(i64, i64)> = points.iter().map(at).collect();
    for pair in raw.windows(2) {
        canvas.line(pair[0], pair[1], [160, 190, 235], 1);
    }
    let smoothed: Vec<(f64, f64)> = (0..points.len())
        .map(|i| {
            let window = &points[i.saturating_sub(SMOOTHING - 1)..=i];
            (points[i].0, window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64)
        })
        .collect();
    let smoothed: Vec<(i64, i64)> = smoothed.iter().map(at).collect();
    for pair in smoothed.windows(2) {
        canvas.line(pair[0], pair[1], [20, 60, 160], 2);
    }
    for &(px, py) in &smoothed {
        if points.len() <= 40 {
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1), (-1, 0), (0, -1)] {
                canvas.dot(px + dx, py + dy, [20, 60, 160]);
            }
        }
    }
    canvas.png()
}

/// Writes `dir/<metric>.png` for every plotted metric with values in the metrics log
/// `metrics`, and `dir/plots.md` listing them with their ranges. Returns the metrics plotted.
pub fn write_plots(metrics: &Path, dir: &Path) -> Result<Vec<&'static str>, TrainError> {
    let text = fs::read_to_string(metrics).map_err(TrainError::io(metrics))?;
    let all = series(&text);
    fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let mut index = String::from(
        "# Metrics over the iterations\n\nEach plot: the values (light) and their moving average over 10 iterations (dark).\n\n",
    );
    let mut plotted = Vec::new();
    for name in PLOTTED {
        let Some(points) = all.get(name) else { continue };
        write_file_atomically(&dir.join(format!("{name}.png")), plot(points))?;
        let ((s0, s1), _) = ranges(points);
        let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let last = points.last().map_or(f64::NAN, |p| p.1);
        let _ = writeln!(
            index,
            "## {name}\n\n![{name}]({name}.png)\n\nIterations {s0:.0} to {s1:.0}; values from {lo:.4} (bottom) to {hi:.4} (top); last {last:.4}.\n"
        );
        plotted.push(name);
    }
    write_file_atomically(&dir.join("plots.md"), index)?;
    Ok(plotted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_with_values_gets_a_plot_and_a_line_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let lines: Vec<String> = (0..30)
            .map(|s| {
                let eval = if s % 10 == 9 { format!(", \"eval_frechet\": {}", 50 - s) } else { String::new() };
                format!("{{\"step\": {s}, \"loss_adm\": {}, \"loss_sdm\": null{eval}}}", 1.0 / (s + 1) as f64)
            })
            .collect();
        fs::write(&metrics, lines.join("\n") + "\n{\"step\": 30, \"loss_a").unwrap();
        let plots = dir.path().join("plots");
        assert_eq!(write_plots(&metrics, &plots).unwrap(), vec!["loss_adm", "eval_frechet"]);
        for name in ["loss_adm", "eval_frechet"] {
            let png = fs::read(plots.join(format!("{name}.png"))).unwrap();
            let decoder = png::Decoder::new(std::io::Cursor::new(png));
            let info = decoder.read_info().unwrap().info().clone();
            assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        }
        let index = fs::read_to_string(plots.join("plots.md")).unwrap();
        assert!(index.contains("![loss_adm](loss_adm.png)") && index.contains("Iterations 1 to 30"), "{index}");
        assert!(index.contains("Iterations 10 to 30; values from 21.0000 (bottom) to 41.0000 (top); last 21.0000"));
        assert!(!index.contains("loss_sdm"), "a metric without values is not plotted");
    }

    #[test]
    fn the_curve_is_drawn_where_its_values_are() {
        // A rising line: dark pixels at the bottom left and the right end, none top left.
        let points: Vec<(f64, f64)> = (1..=100).map(|s| (s as f64, s as f64)).collect();
        let canvas = plot(&points);
        let mut decoder = png::Decoder::new(std::io::Cursor::new(canvas)).read_info().unwrap();
        let mut rgb = vec![0; decoder.output_buffer_size().unwrap()];
        decoder.next_frame(&mut rgb).unwrap();
        let dark = |x: usize, y: usize| {
            (y.saturating_sub(3)..(y + 4).min(HEIGHT))
                .any(|yy| rgb[(yy * WIDTH + x) * 3 + 2] == 160 && rgb[(yy * WIDTH + x) * 3] == 20)
        };
        // The moving average ends at the mean of the last 10 values, 95.5.
        let end = HEIGHT - MARGIN - ((95.5 - 1.0) / 99.0 * (HEIGHT - 2 * MARGIN) as f64).round() as usize;
        assert!(dark(MARGIN, HEIGHT - MARGIN) && dark(WIDTH - MARGIN, end));
        assert!(!dark(MARGIN + 5, MARGIN + 5));
    }
}
