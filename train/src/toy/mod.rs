//! The toy world: captioned procedural clips, the toy teacher's networks and tokenizer, and the
//! folder layout of its shipped assets.

pub mod assets;
pub mod preset;
pub mod style;
pub mod vocabulary;
pub mod world;

pub use style::Style;
pub use world::{Attributes, ClipSpec, Split, ToyWorld};
