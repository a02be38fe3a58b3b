//! vifnet as a library: the binary is `cli::main`; tests reach the layers directly.
//!
//! The data flows one way (design.md §4):
//! argv/env/xenstore/mode file → `config` → `model` → `plan` (pure) → `apply` (the only side effects).

pub mod apply;
pub mod cli;
pub mod config;
pub mod log;
pub mod model;
pub mod names;
pub mod observe;
pub mod plan;
pub mod state;
pub mod xenstore;
