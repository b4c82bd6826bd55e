//! The pieces of the AVDM2 method (`method.md`): backward simulation of the student's sampler,
//! video adversarial distribution matching (ADM) with its discriminator, and frame-level score
//! distribution matching (SDM) with its fake score.

pub mod adm;
pub mod backward_sim;
pub mod discriminator;
pub mod fake_score;
pub mod sdm;
