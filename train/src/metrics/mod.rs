//! Video quality measures: the Fréchet distance of feature sets, temporal flicker, diversity
//! per prompt and CLIPScore (with the image preparation CLIP's processor does).

pub mod clip_score;
pub mod diversity;
pub mod flicker;
pub mod frechet;
pub mod fvd;
pub mod pil_resize;

pub use diversity::prompt_diversity;
pub use flicker::frame_change;
pub use frechet::{Gaussian, frechet_distance};
