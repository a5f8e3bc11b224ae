//! The rule engine: pure, clock passed in. `expr` is the condition language
//! of interlock and consistency rules.

pub mod engine;
pub mod expr;

pub use engine::{Engine, Instance, Output};
