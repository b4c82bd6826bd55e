//! avdm-train: the AVDM2 distillation (discriminator, ADM, SDM, backward simulation, learner),
//! the toy world, teacher training and evaluation.
//!
//! It builds on the networks of `avdm-model` and the loaders of `avdm-import`; its modules
//! arrive with the distillation, toy-world and data issues (see `book/src/architecture.md`).
