//! Diversity: how different the clips of one prompt are from each other. For every prompt with
//! at least two clips, the mean Euclidean distance between the judge's features of its clips,
//! pair by pair; then the mean over those prompts. 0 when every prompt's clips are the same
//! (the loss of diversity the paper names as the method's limit); real clips set the scale.

use std::collections::BTreeMap;

/// The mean over prompts of the mean pairwise feature distance among each prompt's clips;
/// `None` when no prompt has two clips. `features[i]` belongs to `prompts[i]`.
pub fn prompt_diversity<K: Ord>(features: &[Vec<f32>], prompts: &[K]) -> Option<f64> {
    let mut groups: BTreeMap<&K, Vec<&[f32]>> = BTreeMap::new();
    for (f, prompt) in features.iter().zip(prompts) {
        groups.entry(prompt).or_default().push(f);
    }
    let per_prompt: Vec<f64> = groups
        .values()
        .filter(|clips| clips.len() >= 2)
        .map(|clips| {
            let mut total = 0.0;
            let mut pairs = 0usize;
            for (i, a) in clips.iter().enumerate() {
                for b in &clips[i + 1..] {
                    let squared: f64 = a.iter().zip(*b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
                    total += squared.sqrt();
                    pairs += 1;
                }
            }
            total / pairs as f64
        })
        .collect();
    (!per_prompt.is_empty()).then(|| per_prompt.iter().sum::<f64>() / per_prompt.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_clips_have_no_diversity() {
        let same = vec![vec![0.5, -1.0, 2.0]; 4];
        assert_eq!(prompt_diversity(&same, &["a", "a", "b", "b"]), Some(0.0));
    }

    #[test]
    fn known_feature_sets_give_the_closed_form() {
        // Prompt a: one pair 5 apart (3-4-5). Prompt b: a right triangle with sides 3, 4, 5:
        // mean 4. Prompt c has one clip and does not count. Mean over prompts: 4.5.
        let features =
            vec![vec![0.0, 0.0], vec![3.0, 4.0], vec![0.0, 0.0], vec![3.0, 0.0], vec![0.0, 4.0], vec![9.0, 9.0]];
        let prompts = ["a", "a", "b", "b", "b", "c"];
        assert_eq!(prompt_diversity(&features, &prompts), Some(4.5));
        assert_eq!(prompt_diversity(&features[..1], &prompts[..1]), None, "no prompt with two clips");
    }
}
