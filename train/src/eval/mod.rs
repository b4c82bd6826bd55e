//! Measuring a text-to-video model: on the toy world with the toy judge (Fréchet distance of
//! its features, prompt accuracy, flicker, diversity, style), and with the paper's measures
//! (FVD, CLIPScore) on real prompt sets.

pub mod judge;
pub mod standard;
pub mod toy;
