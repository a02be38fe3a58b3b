//! Parsers for every place a setting can come from (design.md §2). They return raw
//! strings with their origin; `model` turns them into validated types.

pub mod domain;
pub mod error;
pub mod inputs;
pub mod kv;
pub mod modefile;
pub mod sxp;
pub mod xlconf;

pub use error::ConfigError;
